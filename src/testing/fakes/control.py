"""Control plane shared by the fake Ollama and fake LM Studio servers.

Failover tests must flip an upstream between healthy and broken *while it runs*, from the test
process, without restarting it (restarts are slow and change what the client sees).  So every
fake keeps a mutable :class:`FakeState` and exposes it on the same port under ``/_control``:

* ``POST /_control`` merges the given fields into the current configuration (fields not given
  keep their value) and answers the full snapshot.  ``GET /_control`` answers the snapshot.
* ``POST /_control/reset`` restores the command-line defaults and clears the request log.
* ``GET /_control/requests`` lists the API requests received since the last reset/clear;
  ``DELETE /_control/requests`` clears that list.

Behaviour fields (``mode``, ``routes``, ``status``, ``retry_after``, ``message``,
``after_chunks``, ``first_token_delay``, ``chunk_delay``, ``times``, ``error_shape``,
``usage``) describe
*how* the next requests are answered and revert together to the defaults once ``times`` matching
requests have been served.  World fields (``models``, ``loaded``, ``reply``, ``reply_tokens``,
``jit``, ``load_time``, ``tool_calls``) describe *what* the server has; they persist until
changed or reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from aiohttp import web

from .abilities import TOOL_CALL_MODES
from .tokens import fixed_tokens, split_tokens

MODES = ("ok", "hang", "status", "midstream_error", "cut", "malformed", "loading")
ROUTE_SCOPES = ("chat", "health", "all")
ERROR_SHAPES = ("object", "string")


class Hanging:
    """Requests held open right now by ``hang`` (the snapshot's ``hanging``): a test can see
    that a client really closed a connection it gave up on (hedge losers, timeouts)."""

    now = 0


@dataclass(frozen=True)
class Behaviour:
    """How matching requests are answered (see the module docstring and tests/fakes/README.md)."""

    mode: str = "ok"
    routes: str = "chat"
    status: int = 500
    retry_after: float | None = None
    message: str | None = None
    after_chunks: int | None = None
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    times: int | None = None
    error_shape: str = "object"
    usage: bool = True
    """False: report no token counts, as llama.cpp's server does in streams."""

    def applies_to(self, kind: str) -> bool:
        """True when a request of route kind ``chat``/``health`` is governed by this behaviour."""
        return self.routes == "all" or self.routes == kind

    @property
    def chunks_before_failure(self) -> int:
        """Good content chunks sent before a failure; hang defaults to 0 (no bytes at all)."""
        if self.after_chunks is not None:
            return self.after_chunks
        return 0 if self.mode == "hang" else 1


DEFAULT_BEHAVIOUR = Behaviour()
BEHAVIOUR_FIELDS = frozenset(f.name for f in fields(Behaviour))
WORLD_FIELDS = frozenset({"models", "loaded", "reply", "reply_tokens", "jit", "load_time",
                          "slots", "tool_calls"})
CHAT_PATHS = frozenset({"/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"})
"""The routes that take one of the server's ``slots``."""


def _check_number(name: str, value: Any, *, integer: bool = False, nullable: bool = False) -> None:
    """Reject bad control values loudly: a typo in a test must not silently mean "ok"."""
    if value is None and nullable:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        raise ValueError(f"{name} must be a non-negative {'integer' if integer else 'number'}")


def _check_names(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of model names")
    return list(value)


class FakeState:
    """Mutable configuration of one fake process plus its request log."""

    def __init__(
        self,
        *,
        models: list[str],
        loaded: list[str] | None,
        reply: str,
        reply_tokens: int | None = None,
        jit: bool = False,
        load_all_by_default: bool = False,
        max_recorded: int = 10_000,
    ) -> None:
        self._load_all = load_all_by_default
        self._defaults: dict[str, Any] = {
            "models": list(models),
            "loaded": list(models)
            if loaded is None and load_all_by_default
            else list(loaded or []),
            "reply": reply,
            "reply_tokens": reply_tokens,
            "jit": jit,
            "load_time": 0.0,
            "tool_calls": "per_turn",
            "slots": None,
        }
        self.in_flight = 0
        self._slot_free = asyncio.Condition()
        self.requests: deque[dict[str, Any]] = deque(maxlen=max_recorded)
        self.reset()

    def reset(self) -> None:
        """Back to the command-line defaults, empty request log."""
        self.behaviour = DEFAULT_BEHAVIOUR
        self.blobs: set[str] = set()
        """Digests of the blobs pushed with ``POST /api/blobs/:digest`` (Ollama's)."""
        self._remaining: int | None = None
        self.models: list[str] = list(self._defaults["models"])
        self.loaded: list[str] = list(self._defaults["loaded"])
        self.reply: str = self._defaults["reply"]
        self.reply_tokens: int | None = self._defaults["reply_tokens"]
        self.jit: bool = self._defaults["jit"]
        self.load_time: float = self._defaults["load_time"]
        """Seconds a request waits when its model is not loaded yet (a simulated cold load)."""
        self.tool_calls: str = self._defaults["tool_calls"]
        """When offered tools are called (``abilities.TOOL_CALL_MODES``)."""
        self.slots: int | None = self._defaults["slots"]
        """Chat requests served at once; the rest wait their turn, as a real server's queue
        (None: no limit)."""
        self.max_in_flight = 0
        """The most chat requests this server was answering at once since the reset."""
        self._refresh_tokens()
        self.requests.clear()

    def _refresh_tokens(self) -> None:
        # Tokenised once per change, not per request: the benchmark uses these fakes as the
        # fast upstream, so the hot path must not re-split the reply every time.
        if self.reply_tokens is not None:
            self.tokens: tuple[str, ...] = fixed_tokens(self.reply_tokens)
        else:
            self.tokens = split_tokens(self.reply)

    def update(self, patch: dict[str, Any]) -> None:
        """Validate and merge a ``POST /_control`` body; raises ValueError on bad input."""
        unknown = set(patch) - BEHAVIOUR_FIELDS - WORLD_FIELDS
        if unknown:
            raise ValueError(f"unknown control fields: {sorted(unknown)}")
        b_patch = {k: v for k, v in patch.items() if k in BEHAVIOUR_FIELDS}
        new = replace(self.behaviour, **b_patch)
        if new.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if new.routes not in ROUTE_SCOPES:
            raise ValueError(f"routes must be one of {ROUTE_SCOPES}")
        if new.error_shape not in ERROR_SHAPES:
            raise ValueError(f"error_shape must be one of {ERROR_SHAPES}")
        if (
            isinstance(new.status, bool)
            or not isinstance(new.status, int)
            or not 400 <= new.status <= 599
        ):
            raise ValueError("status must be an HTTP error code 400..599")
        if not isinstance(new.usage, bool):
            raise ValueError("usage must be true or false")
        if new.message is not None and not isinstance(new.message, str):
            raise ValueError("message must be a string")
        _check_number("retry_after", new.retry_after, nullable=True)
        _check_number("after_chunks", new.after_chunks, integer=True, nullable=True)
        _check_number("first_token_delay", new.first_token_delay)
        _check_number("chunk_delay", new.chunk_delay)
        _check_number("times", new.times, integer=True, nullable=True)
        if new.times == 0:
            raise ValueError("times must be >= 1 (omit it or use null for 'until changed')")

        models = _check_names("models", patch["models"]) if "models" in patch else self.models
        if "loaded" in patch:
            loaded = _check_names("loaded", patch["loaded"])
        elif "models" in patch:
            loaded = list(models) if self._load_all else [m for m in self.loaded if m in models]
        else:
            loaded = self.loaded
        missing = [m for m in loaded if m not in models]
        if missing:
            raise ValueError(f"loaded models must also be in models: {missing}")
        if "reply" in patch and not isinstance(patch["reply"], str):
            raise ValueError("reply must be a string")
        if "reply_tokens" in patch:
            _check_number("reply_tokens", patch["reply_tokens"], integer=True, nullable=True)
        if "jit" in patch and not isinstance(patch["jit"], bool):
            raise ValueError("jit must be a boolean")
        if "load_time" in patch:
            _check_number("load_time", patch["load_time"])
        if "slots" in patch:
            _check_number("slots", patch["slots"], integer=True, nullable=True)
            if patch["slots"] == 0:
                raise ValueError("slots must be >= 1 (or null for no limit)")
        if "tool_calls" in patch and patch["tool_calls"] not in TOOL_CALL_MODES:
            raise ValueError(f"tool_calls must be one of {TOOL_CALL_MODES}")

        # Everything validated: apply atomically.
        self.behaviour = new
        if "times" in patch:
            self._remaining = new.times
        self.models, self.loaded = list(models), list(loaded)
        if "reply" in patch:
            self.reply, self.reply_tokens = patch["reply"], None
        if "reply_tokens" in patch:
            self.reply_tokens = patch["reply_tokens"]
        self.jit = patch.get("jit", self.jit)
        self.load_time = float(patch.get("load_time", self.load_time))
        self.tool_calls = patch.get("tool_calls", self.tool_calls)
        self.slots = patch.get("slots", self.slots)
        self._refresh_tokens()

    def plan(self, kind: str) -> Behaviour:
        """Behaviour for one incoming request of route kind ``chat``/``health``.

        Consumes one of ``times`` when the request matches; after the last one the behaviour
        reverts to the default so a test can say "fail once, then recover".
        """
        current = self.behaviour
        if not current.applies_to(kind):
            return DEFAULT_BEHAVIOUR
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self.behaviour, self._remaining = DEFAULT_BEHAVIOUR, None
        return current

    async def ensure_loaded(self, model: str) -> None:
        """Load ``model`` if it is not loaded: ``load_time`` seconds, then it is loaded."""
        if model in self.models and model not in self.loaded and self.load_time:
            await asyncio.sleep(self.load_time)
        self.mark_loaded(model)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of ``slots`` while a chat request is answered (waiting for one if all
        are taken), and count the most held at once."""
        async with self._slot_free:
            await self._slot_free.wait_for(lambda: self.slots is None
                                           or self.in_flight < self.slots)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            async with self._slot_free:
                self.in_flight -= 1
                self._slot_free.notify_all()

    def mark_loaded(self, model: str) -> None:
        """Remember that a model has been used (it then shows in /api/ps or as loaded)."""
        if model in self.models and model not in self.loaded:
            self.loaded.append(model)

    def snapshot(self) -> dict[str, Any]:
        """The whole configuration as JSON-able data (answer of every control call)."""
        return {
            "behaviour": asdict(self.behaviour),
            "remaining": self._remaining,
            "models": list(self.models),
            "loaded": list(self.loaded),
            "reply": self.reply,
            "reply_tokens": self.reply_tokens,
            "jit": self.jit,
            "load_time": self.load_time,
            "tool_calls": self.tool_calls,
            "slots": self.slots,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "recorded": len(self.requests),
            "hanging": Hanging.now,
        }


BODY_LIMIT = 128 * 1024 * 1024
"""The largest request body a fake accepts: the real servers take 20 MB images too."""

STATE: web.AppKey[FakeState] = web.AppKey("fake_state", FakeState)
INVALID_JSON = object()  # marker stored in request["json"] when the body is not JSON


@web.middleware
async def record_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Parse the body once (handlers reuse request["json"]) and log every non-control request."""
    if request.path.startswith("/_control"):
        return await handler(request)
    raw = await request.read() if request.body_exists else b""
    parsed: Any = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = INVALID_JSON
    request["json"] = parsed
    request.app[STATE].requests.append(
        {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "json": None if parsed is INVALID_JSON else parsed,
            "body": raw.decode("utf-8", "replace") if parsed is INVALID_JSON else None,
        }
    )
    if request.path in CHAT_PATHS:
        async with request.app[STATE].slot():
            return await handler(request)
    return await handler(request)


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].snapshot())


async def _post_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        patch = await request.json()
        if not isinstance(patch, dict):
            raise ValueError("control body must be a JSON object")
        state.update(patch)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(state.snapshot())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response(request.app[STATE].snapshot())


async def _list_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STATE].requests))


async def _clear_requests(request: web.Request) -> web.Response:
    state = request.app[STATE]
    count = len(state.requests)
    state.requests.clear()
    return web.json_response({"cleared": count})


def add_control_routes(app: web.Application, state: FakeState) -> None:
    """Attach the state, the recording middleware's state and the ``/_control`` routes."""
    app[STATE] = state
    app.router.add_get("/_control", _get_config)
    app.router.add_post("/_control", _post_config)
    app.router.add_post("/_control/reset", _reset)
    app.router.add_get("/_control/requests", _list_requests)
    app.router.add_delete("/_control/requests", _clear_requests)
