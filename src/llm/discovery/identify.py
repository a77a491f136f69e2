"""Asking one loopback port what answers there: an engine (which one, with which models), or
nothing DEMI can use.

A closed port costs one refused connect and nothing else, so a machine running none of the
engines pays well under a millisecond per port. An open one gets a handful of small GETs
at once (``/v1/models``, ``/api/version``, ``/api/tags``, ``/props``,
``/api/extra/version``, ``/v1/internal/model/info``, ``/readyz``), and the answers are
matched against the signatures in :mod:`.engines`, most specific first.

This is the one place discovery meets the network: every aiohttp, socket, timeout and JSON
error becomes "no answer" here (a port that answers nonsense is simply not an engine).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .engines import (
    KOBOLDCPP,
    LLAMACPP,
    LLAMAFILE,
    LOCALAI,
    OLLAMA,
    OWNED_BY,
    TGWUI,
    Engine,
    by_port,
)

LOOPBACK = "127.0.0.1"
"""Discovery never looks anywhere else: it is not a network scan."""

PATHS = ("/v1/models", "/api/version", "/api/tags", "/props", "/api/extra/version",
         "/v1/internal/model/info", "/readyz")
MAX_BODY = 1 << 20
"""A discovery answer larger than this is not an engine's model list."""


@dataclass(frozen=True, slots=True)
class Found:
    """An engine answering on a loopback port."""

    engine: Engine
    port: int
    models: tuple[str, ...] = ()
    """What it serves, as its own listing names them (first = the one DEMI asks for)."""
    needs_key: bool = False
    """It answered 401/403 without an API key (Jan asks for one): usable once configured."""
    version: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def usable(self) -> bool:
        """DEMI can add it as it is: no key needed, and (for Ollama, whose provider must name
        its model) a model to ask for."""
        return not self.needs_key and (self.engine.kind != "ollama" or bool(self.models))


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    server: str
    body: Any
    """The parsed JSON, or None when the body was not JSON."""


async def listening(port: int, timeout: float) -> bool:  # noqa: ASYNC109 (a bound, not a cancel)
    """Whether anything accepts a TCP connection on the loopback port (refused: at once)."""
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(LOOPBACK, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def fetch(session: aiohttp.ClientSession, url: str) -> Answer | None:
    """GET ``url``: its status, ``Server`` header and JSON body, or None if nothing sensible
    came back (connection error, timeout, a body too large)."""
    try:
        async with session.get(url, allow_redirects=False) as resp:
            raw = await resp.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                return None
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            return Answer(resp.status, resp.headers.get("Server", ""), body)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def identify(session: aiohttp.ClientSession, port: int) -> Found | None:
    """What answers on ``port``, or None (nothing DEMI can talk to). Call it for ports
    that accept connections (:func:`listening`): a closed one would cost seven refusals."""
    base = f"http://{LOOPBACK}:{port}"
    answers = await asyncio.gather(*(fetch(session, base + path) for path in PATHS))
    return recognise(port, dict(zip(PATHS, answers, strict=True)))


def _ok_json(answer: Answer | None) -> Mapping[str, Any] | None:
    if answer is None or answer.status != 200 or not isinstance(answer.body, Mapping):
        return None
    return answer.body


def _listing(answer: Answer | None) -> tuple[tuple[str, ...], set[str]] | None:
    """(model ids, owned_by values) of an OpenAI ``/v1/models`` answer, or None."""
    body = _ok_json(answer)
    if body is None or not isinstance(body.get("data"), list):
        return None
    ids: list[str] = []
    owners: set[str] = set()
    for entry in body["data"]:
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), str) and entry["id"]:
            ids.append(entry["id"])
            if isinstance(entry.get("owned_by"), str):
                owners.add(entry["owned_by"].lower())
    return tuple(ids), owners


def recognise(port: int, answers: Mapping[str, Answer | None]) -> Found | None:
    """Match the answers of one port against the engines' signatures (pure: tested alone)."""
    server = next((a.server for a in answers.values() if a is not None and a.server), "")
    models_answer = answers.get("/v1/models")
    listing = _listing(models_answer)
    ids, owners = listing if listing is not None else ((), set())
    props = _ok_json(answers.get("/props"))

    # Ollama: /api/version and /api/tags (llama.cpp's server imitates some of Ollama's
    # routes, so its own Server header wins over that).
    version = _ok_json(answers.get("/api/version"))
    tags = _ok_json(answers.get("/api/tags"))
    if (version is not None and isinstance(version.get("version"), str)
            and tags is not None and isinstance(tags.get("models"), list)
            and not server.lower().startswith("llama.cpp")):
        names = tuple(m["name"] for m in tags["models"]
                      if isinstance(m, Mapping) and isinstance(m.get("name"), str))
        return Found(OLLAMA, port, names, version=version["version"])

    kobold = _ok_json(answers.get("/api/extra/version"))
    if kobold is not None and str(kobold.get("result", "")).lower() == "koboldcpp":
        version_text = kobold.get("version")
        return Found(KOBOLDCPP, port, ids,
                     version=version_text if isinstance(version_text, str) else None)

    llama_props = props is not None and "default_generation_settings" in props
    if server.lower().startswith(("llama.cpp", "llamafile")) or llama_props or (
            "llamacpp" in owners):
        hints = " ".join(str(props.get(k, "")) for k in ("build_info", "model_path")) \
            if props is not None else ""
        engine = LLAMAFILE if "llamafile" in f"{server} {hints}".lower() else LLAMACPP
        alias = props.get("model_alias") if props is not None else None
        if not ids and isinstance(alias, str) and alias:
            ids = (alias,)
        return Found(engine, port, ids)

    for owner, engine in OWNED_BY.items():
        if owner in owners:
            return Found(engine, port, ids)

    info = _ok_json(answers.get("/v1/internal/model/info"))
    if info is not None and "model_name" in info:
        name = info.get("model_name")
        if not ids and isinstance(name, str) and name not in ("", "None"):
            ids = (name,)
        return Found(TGWUI, port, ids)

    if listing is not None:
        ready = answers.get("/readyz")
        if ready is not None and ready.status == 200 and props is None:
            return Found(LOCALAI, port, ids)
        return Found(by_port(port), port, ids)

    if models_answer is not None and models_answer.status in (401, 403):
        return Found(by_port(port), port, needs_key=True)
    return None
