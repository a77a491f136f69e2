"""Every exception class the libraries under the providers can raise resolves to a row of the
error table of each provider kind that can meet it (as httpx tests map_httpcore_exceptions).

The classes are enumerated, not listed: each library's exported exception classes plus every
subclass of its base errors, so a class a new version adds fails here until it is mapped
(or recorded in :data:`NEVER_MET` with the reason no provider can meet it).
"""

from __future__ import annotations

import builtins
import json
import socket
import ssl
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import ollama
import pydantic
import pytest
from aiohttp.http import HttpProcessingError

from src.llm.providers._errors import SHARED_ERRORS, ErrorTable
from src.llm.providers.ollama import OLLAMA_ERRORS


def _exported(module: ModuleType) -> set[type[BaseException]]:
    return {v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, BaseException)}


def _family(library: str, *bases: type[BaseException]) -> set[type[BaseException]]:
    """The bases and all their subclasses that the library itself defines."""
    found: set[type[BaseException]] = set()
    todo = list(bases)
    while todo:
        cls = todo.pop()
        if cls not in found and cls.__module__.split(".")[0] == library:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


AIOHTTP = _exported(aiohttp) | _family("aiohttp", aiohttp.ClientError, HttpProcessingError)
HTTPX = _exported(httpx) | _family("httpx", httpx.HTTPError, httpx.StreamError)
OLLAMA = _exported(ollama) | _family("ollama", ollama.ResponseError, ollama.RequestError)
PYDANTIC = {pydantic.ValidationError}
STDLIB: set[type[BaseException]] = {
    *(v for v in vars(builtins).values() if isinstance(v, type) and issubclass(v, OSError)),
    *(v for v in vars(socket).values() if isinstance(v, type) and issubclass(v, OSError)),
    *(v for v in vars(ssl).values() if isinstance(v, type) and issubclass(v, OSError)),
    json.JSONDecodeError, UnicodeDecodeError,
}
"""The OS's (sockets, TLS, ``TimeoutError``) and the decoders' errors every kind meets."""

NEVER_MET: dict[type[BaseException], str] = {
    aiohttp.BadContentDispositionHeader: "a warning of multipart parsing; DEMI reads none",
    aiohttp.BadContentDispositionParam: "a warning of multipart parsing; DEMI reads none",
    aiohttp.EofStream: "internal to aiohttp's stream readers, caught inside aiohttp",
    aiohttp.WebSocketError: "DEMI opens no websocket",
    aiohttp.WSMessageTypeError: "DEMI opens no websocket",
    httpx.CookieConflict: "raised by Cookies.get only; DEMI reads no cookie",
    httpx.InvalidURL: "raised building the client from the validated base_url, at start-up",
    **{cls: "a stream read twice or after closing: a DEMI bug by definition"
       for cls in _family("httpx", httpx.StreamError)},
}
"""Exported classes no provider can meet: unmapped on purpose, so one would show as a bug."""

KINDS: dict[str, tuple[ErrorTable, set[type[BaseException]]]] = {
    "openai": (SHARED_ERRORS, AIOHTTP | STDLIB),
    "ollama": (OLLAMA_ERRORS, AIOHTTP | STDLIB | HTTPX | OLLAMA | PYDANTIC),
}


def _name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _cases() -> Iterable[object]:
    for kind, (table, met) in KINDS.items():
        for cls in sorted(met - NEVER_MET.keys(), key=_name):
            yield pytest.param(table, cls, id=f"{kind}:{_name(cls)}")


@pytest.mark.parametrize(("table", "cls"), list(_cases()))
def test_every_foreign_class_a_kind_meets_is_mapped(table: ErrorTable, cls: type) -> None:
    """A class the kind can meet resolves to one of its rows; a new unmapped one fails here."""
    assert table.factory_for(cls) is not None, f"{_name(cls)} is not in {table!r}"


def test_the_enumeration_finds_what_it_should() -> None:
    """The walk reaches the classes the providers really meet (it is not silently empty)."""
    assert {aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError} <= AIOHTTP
    assert {httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.DecodingError} <= HTTPX
    assert {ollama.ResponseError, ollama.RequestError} <= OLLAMA
    assert {ConnectionRefusedError, TimeoutError, socket.gaierror, ssl.SSLError} <= STDLIB


@pytest.mark.parametrize("cls", sorted(NEVER_MET, key=_name), ids=_name)
def test_classes_no_provider_meets_stay_unmapped(cls: type) -> None:
    """What NEVER_MET lists is exported and really unmapped (else the list would lie)."""
    assert cls in AIOHTTP | HTTPX | OLLAMA
    assert OLLAMA_ERRORS.factory_for(cls) is None and SHARED_ERRORS.factory_for(cls) is None


@pytest.mark.parametrize("cls", sorted(AIOHTTP | STDLIB, key=_name), ids=_name)
def test_the_ollama_kind_maps_shared_errors_as_the_shared_table_does(cls: type) -> None:
    """Ollama's own rows only add to the shared table: aiohttp and OS errors map alike."""
    assert OLLAMA_ERRORS.factory_for(cls) is SHARED_ERRORS.factory_for(cls)


@pytest.mark.parametrize("table", [SHARED_ERRORS, OLLAMA_ERRORS], ids=repr)
def test_no_row_is_hidden_behind_an_earlier_one(table: ErrorTable) -> None:
    """The first matching row wins, so a row below a row for its base class would be dead."""
    dead = [(_name(later), _name(earlier))
            for i, earlier in enumerate(table.catches)
            for later in table.catches[i + 1:] if issubclass(later, earlier)]
    assert dead == []
