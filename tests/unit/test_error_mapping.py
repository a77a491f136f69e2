"""The one mapping of foreign errors into DEMI's tree: the boundary, its tables, the status
function and the few rows where message text decides."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import ollama
import pydantic
import pytest
from aiohttp.http import HttpProcessingError

from src.llm.errors import (
    DemiError,
    ModelNotFound,
    ProviderBusy,
    ProviderRejected,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
)
from src.llm.providers._errors import (
    HINTS,
    SHARED_ERRORS,
    ErrorTable,
    Meaning,
    connection_reason,
    map_errors,
    map_status,
    says,
)
from src.llm.providers.ollama import OLLAMA_ERRORS

WHO = SimpleNamespace(name="ollama", display_name="Ollama")


def mapped(
    exc: BaseException, table: ErrorTable = SHARED_ERRORS, timeout: Any = "timed out",
) -> BaseException:
    """What leaves a boundary when ``exc`` is raised inside it."""
    try:
        with map_errors(WHO, table, timeout, model="llama3.2:1b"):
            raise exc
    except BaseException as out:  # whatever comes out, cancellations included
        return out
    raise AssertionError("the boundary swallowed an exception")


def _validation_error() -> pydantic.ValidationError:
    class Part(pydantic.BaseModel):
        done: bool

    try:
        Part.model_validate({"done": "maybe"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("validated")


def _dns_error() -> BaseException:
    key = SimpleNamespace(host="nowhere.invalid", port=80, ssl=True)
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return aiohttp.ClientConnectorDNSError(key, gai)  # type: ignore[arg-type]


@pytest.mark.parametrize(("exc", "kind"), [
    (TimeoutError(), ProviderTimeout),
    (aiohttp.ServerTimeoutError("read"), ProviderTimeout),
    (aiohttp.ConnectionTimeoutError("connect"), ProviderTimeout),
    (ConnectionRefusedError(111, "Connection refused"), ProviderUnavailable),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ProviderUnavailable),
    (aiohttp.ClientOSError(errno.ECONNRESET, "reset"), ProviderUnavailable),
    (aiohttp.InvalidURL("http//nowhere"), ProviderUnavailable),
    (aiohttp.ServerDisconnectedError(), ProviderResponseError),
    (aiohttp.ClientPayloadError("cut"), ProviderResponseError),
    (json.JSONDecodeError("bad", "x", 0), ProviderResponseError),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ProviderResponseError),
    (HttpProcessingError(message="bad chunk"), ProviderResponseError),
])
def test_foreign_errors_map_to_demi_errors(exc: BaseException, kind: type) -> None:
    """Network and parsing errors become the provider errors failover understands."""
    out = mapped(exc)
    assert type(out) is kind and out.provider == "ollama"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("exc", "reason"), [
    (TimeoutError(), "no first token within 5s"),
    (aiohttp.ServerDisconnectedError(), "connection closed in the middle of the reply"),
    (json.JSONDecodeError("bad", "x", 0), "malformed reply from Ollama"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "Connection refused"),
])
def test_reasons_stay_word_for_word(exc: BaseException, reason: str) -> None:
    """The reasons the guide's log lines and the scenario tests read are unchanged."""
    out = mapped(exc, timeout="no first token within 5s")
    assert out.reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("exc", [TypeError("bug"), KeyError("k"), AttributeError("a"),
                                 ValueError("v"), RuntimeError("r")])
def test_demi_bugs_are_not_mapped(exc: BaseException) -> None:
    """An exception outside the table is DEMI's own bug: it leaves the boundary unchanged."""
    assert mapped(exc) is exc
    assert mapped(exc, OLLAMA_ERRORS) is exc


@pytest.mark.parametrize("exc", [
    ModelNotFound("ollama", "gone"), RequestError("bad"), ProviderBusy("x", "busy"),
])
def test_demi_errors_pass_through_untouched(exc: DemiError) -> None:
    """DEMI's own errors (raised by a status check inside the boundary) are not re-mapped."""
    assert mapped(exc) is exc
    assert mapped(exc, OLLAMA_ERRORS) is exc


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), GeneratorExit()])
def test_cancellation_and_exits_are_never_mapped(exc: BaseException) -> None:
    """A cancellation (or a closing generator) passes the boundary as it came."""
    assert mapped(exc) is exc
    assert mapped(exc, OLLAMA_ERRORS) is exc


def test_the_foreign_error_is_kept_as_the_cause() -> None:
    """The mapped error is raised from the original, so a traceback still shows it."""
    exc = ConnectionResetError(errno.ECONNRESET, "reset by peer")
    out = mapped(exc)
    assert out.__cause__ is exc


def test_a_timeout_is_worded_when_it_happens() -> None:
    """A callable timeout is asked at the failure (the reply clock knows then which bound)."""
    said: list[str] = []

    def describe() -> str:
        said.append("asked")
        return "no data for 3s in the middle of the reply"

    boundary = map_errors(WHO, SHARED_ERRORS, describe)
    with boundary:
        pass
    assert said == []
    with pytest.raises(ProviderTimeout) as info, boundary:
        raise TimeoutError
    assert info.value.reason == "no data for 3s in the middle of the reply" and said == ["asked"]


def test_an_openai_kind_boundary_does_not_catch_the_ollama_clients_errors() -> None:
    """Only the Ollama kind can meet ollama's and httpx's errors; elsewhere they are bugs."""
    for exc in (ollama.ResponseError("x"), httpx.ReadError("x"), _validation_error()):
        assert mapped(exc) is exc


@pytest.mark.parametrize(("exc", "kind", "reason"), [
    (ollama.ResponseError("boom"), ProviderResponseError, "error in the middle of the reply: boom"),
    (ollama.ResponseError('model "llama3.2:1b" not found, try pulling it first'), ModelNotFound,
     "model 'llama3.2:1b' not found (run: ollama pull llama3.2:1b)"),
    (ollama.ResponseError('{"error": "server busy"}', 503), ProviderBusy,
     "busy (503): server busy"),
    (ollama.ResponseError("no such model", 404), ModelNotFound,
     "model 'llama3.2:1b' not found (run: ollama pull llama3.2:1b)"),
    (ollama.ResponseError("llama runner process has terminated", 500), ProviderResponseError,
     "HTTP 500: llama runner process has terminated"),
    (ollama.RequestError("must provide a model"), ProviderRejected, None),
    (httpx.ReadTimeout("slow"), ProviderTimeout, "timed out (ReadTimeout)"),
    (httpx.RemoteProtocolError("peer closed"), ProviderResponseError,
     "connection closed in the middle of the reply"),
    (httpx.ReadError("reset"), ProviderResponseError,
     "connection closed in the middle of the reply"),
    (httpx.ConnectError("[Errno 111] Connection refused"), ProviderUnavailable,
     "Connection refused"),
    (ConnectionError("Failed to connect to Ollama. Please check that Ollama is downloaded, "
                     "running and accessible."), ProviderUnavailable, None),
    (_validation_error(), ProviderResponseError, "malformed reply from Ollama"),
])
def test_ollama_kind_rows(exc: BaseException, kind: type, reason: str | None) -> None:
    """What the ollama client adds (its errors, httpx's, pydantic's) maps as Ollama's table says."""
    out = mapped(exc, OLLAMA_ERRORS)
    assert type(out) is kind
    if reason is not None:
        assert str(out) == reason
    assert out.__cause__ is exc


@pytest.mark.parametrize(("status", "kind"), [
    (400, ProviderRejected), (422, ProviderRejected), (401, ProviderUnavailable),
    (403, ProviderUnavailable),
    (404, ModelNotFound), (429, ProviderBusy), (503, ProviderBusy),
    (500, ProviderResponseError),
])
def test_statuses_map_the_same_for_every_provider_kind(status: int, kind: type) -> None:
    """One status table for Ollama and OpenAI-compatible servers alike."""
    err = map_status("x", "X", status, b'{"error": "nope"}', {"Retry-After": "7"},
                     not_found="model 'm' not found")
    assert type(err) is kind
    if isinstance(err, ProviderBusy):
        assert err.retry_after == 7.0


def test_a_status_whose_text_says_the_model_is_missing_is_model_not_found() -> None:
    """LM Studio's 400 "No models loaded" is a missing model, worded with the server's text."""
    err = map_status("lmstudio", "LMStudio", 400, b'{"error": "No models loaded. Load one"}',
                     None, not_found="model 'q' not available: {text}")
    assert isinstance(err, ModelNotFound)
    assert err.reason == "model 'q' not available: No models loaded. Load one"


# -- the text table: one example per row, as the real servers and libraries word it ----

EXAMPLES: list[tuple[str, Meaning]] = [
    ("Cannot connect to host localhost:11434 ssl:default [Connection refused]", Meaning.REFUSED),
    ("Multiple exceptions: [Errno 111] Connect call failed ('::1', 11434, 0, 0), "
     "[Errno 111] Connect call failed ('127.0.0.1', 11434)", Meaning.REFUSED),
    ("[Errno -2] Name or service not known", Meaning.NO_HOST),
    ("[Errno 8] nodename nor servname provided, or not known", Meaning.NO_HOST),
    ("[Errno -3] Temporary failure in name resolution", Meaning.NO_HOST),
    ("No models loaded. Please load a model in the developer page or use the `lms load` "
     "command.", Meaning.NO_MODEL),
    ('model "llama3.2:1b" not found, try pulling it first', Meaning.NO_MODEL),
    ("gemma:2b does not support tools", Meaning.LACKS_FEATURE),
]


@pytest.mark.parametrize(("text", "meaning"), EXAMPLES, ids=[m.name for _, m in EXAMPLES])
def test_each_hint_row_reads_its_meaning(text: str, meaning: Meaning) -> None:
    """Each row of the text table recognises the message it exists for, and nothing else."""
    assert says(text, meaning)
    assert [m for m in Meaning if says(text, m)] == [meaning]


def test_every_hint_row_has_an_example() -> None:
    """A row added to the text table without an example message above fails here."""
    def matches(words: tuple[str, ...], text: str) -> bool:
        return all(w in text.lower() for w in words)

    unexampled = [words for words, meaning in HINTS
                  if not any(matches(words, t) and m is meaning for t, m in EXAMPLES)]
    assert unexampled == []


def test_text_unrelated_to_a_meaning_says_nothing() -> None:
    """Ordinary failures are read by no row (a 500's "file not found" is no missing model)."""
    for text in ("llama runner process has terminated", "file not found", "invalid options"):
        assert [m for m in Meaning if says(text, m)] == []


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(("exc", "reason"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "whatever the OS says"), "Connection refused"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "Host unreachable"),
    (socket.gaierror(socket.EAI_AGAIN, "anything"), "Host name not found"),
    (_dns_error(), "Host name not found"),
    (OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 1, 0, 0), "
             "[Errno 111] Connect call failed ('127.0.0.1', 1)"), "Connection refused"),
    (_chained(aiohttp.ClientOSError(None, "Cannot write"),  # type: ignore[arg-type]
              ConnectionResetError(errno.ECONNRESET, "reset")), "Connection reset"),
    (aiohttp.ClientError("Something odd\nsecond line"), "Something odd"),
    (aiohttp.ClientError(), "ClientError"),
])
def test_connection_reason_prefers_types_and_errno(exc: BaseException, reason: str) -> None:
    """The cause of a failed connection: by type, then errno, then the text table, then text."""
    assert connection_reason(exc) == reason
