"""Fake Ollama server: a real HTTP process that speaks Ollama's API and fails on command.

Run from the repository root::

    python -m src.testing.fakes.fake_ollama --host 127.0.0.1 --port 0 [--model llama3.2:1b ...]
        [--loaded llama3.2:1b] [--reply TEXT | --reply-tokens N]

It prints ``READY <port>`` once listening.  Routes: ``GET|HEAD /``, ``GET /api/version``,
``GET /api/tags``, ``GET /api/ps``, ``POST /api/chat``, ``POST /api/generate``, and the OpenAI
compatibility layer ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``;
plus the ``/_control`` plane of :mod:`src.testing.fakes.control`.

Faithful details that clients trip over: ``stream`` absent means *stream* (NDJSON); durations
are nanoseconds; errors are ``{"error": "<text>"}``; a mid-stream error is the last NDJSON line
of a 200 response; a chat with no messages only "loads" the model (``done_reason: "load"``);
``/v1/models`` has ``"data": null`` when nothing is installed.  In ``loading`` mode Ollama does
not refuse: the first token is just late (``first_token_delay``) and ``load_duration`` says so.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web

from .abilities import json_text, ollama_schema, tool_call
from .control import (
    BODY_LIMIT,
    INVALID_JSON,
    STATE,
    Behaviour,
    FakeState,
    add_control_routes,
    record_requests,
)
from .engine import (
    StreamPlan,
    answer_stream,
    answer_whole,
    base_arg_parser,
    cap_tokens,
    dumps,
    positive_int,
    preamble,
    prompt_tokens_for_messages,
    prompt_tokens_for_text,
    serve,
)
from .ollama_manage import add_manage_routes
from .openai_api import JSON_TYPE, OpenAIRoutes
from .tokens import continue_from

VERSION = "0.12.6"
MIDSTREAM_MESSAGE = "an error was encountered while running the model: unexpected EOF"
STATUS_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    404: "model '{model}' not found",
    429: "too many requests, please try again later",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
    504: "gateway timeout",
}
MODIFIED_AT = "2025-01-15T10:30:00.123456-08:00"


def canonical(name: str) -> str:
    """Ollama names without a tag mean ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def find_model(state: FakeState, requested: str) -> str | None:
    """The installed model a request name refers to, if any."""
    wanted = canonical(requested)
    return next((m for m in state.models if canonical(m) == wanted), None)


def model_entry(name: str) -> dict[str, Any]:
    """Deterministic ``/api/tags`` entry: digest and size derive from the name."""
    params = re.search(r"(\d+(?:\.\d+)?)b\b", name.lower())
    billions = float(params.group(1)) if params else 7.0
    family = re.split(r"[\d:.]", name.rsplit("/", 1)[-1], maxsplit=1)[0] or "llama"
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": int(billions * 650_000_000),
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": f"{billions:g}B",
            "quantization_level": "Q4_K_M",
        },
    }


def created_at() -> str:
    """RFC 3339 UTC timestamp with nanoseconds, as Ollama writes it."""
    now = time.time_ns()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1_000_000_000))
        + f".{now % 1_000_000_000:09d}Z"
    )


def native_error(status: int, message: str) -> web.Response:
    """Ollama's error shape: ``{"error": "<text>"}``."""
    return web.json_response({"error": message}, status=status, dumps=dumps)


def status_error(
    behaviour: Behaviour, model: Any, status: int, message: str | None
) -> web.Response:
    """Realistic Ollama error for the ``status`` mode (or a non-streamed midstream failure)."""
    if message is None:
        if status == 500 and behaviour.mode == "midstream_error":
            message = MIDSTREAM_MESSAGE
        elif status == 404 and not isinstance(model, str):
            message = "404 page not found"
        else:
            message = STATUS_MESSAGES.get(status, "internal server error").format(model=model)
    return native_error(status, message)


class OllamaOpenAI(OpenAIRoutes):
    """Ollama's OpenAI compatibility layer (``/v1``): Ollama models, Ollama error wording."""

    fingerprint = "fp_ollama"
    model_param = None
    midstream_message = MIDSTREAM_MESSAGE
    status_messages: ClassVar[dict[int, tuple[str, str, str | None]]] = {
        400: ("invalid request", "invalid_request_error", None),
        404: ("model '{model}' not found", "not_found_error", None),
        429: (STATUS_MESSAGES[429], "api_error", None),
        500: (STATUS_MESSAGES[500], "api_error", None),
        503: (STATUS_MESSAGES[503], "api_error", None),
    }

    def resolve_model(
        self, state: FakeState, requested: Any, behaviour: Behaviour
    ) -> tuple[str | None, web.Response | None]:
        if not isinstance(requested, str) or not requested:
            return None, self.error(400, "model is required", type_="invalid_request_error")
        if find_model(state, requested) is None:
            return None, self.error(404, f"model '{requested}' not found", type_="not_found_error")
        return requested, None

    def model_list(self, state: FakeState) -> dict[str, Any]:
        data = [
            {
                "id": m,
                "object": "model",
                "created": 1736965800,
                "owned_by": m.split("/", 1)[0] if "/" in m else "library",
            }
            for m in state.models
        ]
        return {"object": "list", "data": data or None}


async def _health(
    request: web.Request, body: Callable[[], bytes], content_type: str = JSON_TYPE
) -> web.StreamResponse:
    """Shared path of the probe/list routes, governed by ``routes: "health"``."""
    behaviour = request.app[STATE].plan("health")

    def err(status: int, message: str | None) -> web.Response:
        return status_error(behaviour, None, status, message)

    early = await preamble(request, behaviour, error=err)
    if early is not None:
        return early
    return await answer_whole(request, behaviour, body=body, content_type=content_type, error=err)


async def root(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /``: the liveness probe everybody uses."""
    return await _health(request, lambda: b"Ollama is running", "text/plain; charset=utf-8")


async def version(request: web.Request) -> web.StreamResponse:
    """``GET /api/version``."""
    return await _health(request, lambda: dumps({"version": VERSION}).encode())


async def tags(request: web.Request) -> web.StreamResponse:
    """``GET /api/tags``: installed models (what ``ollama.AsyncClient.list()`` reads)."""
    state = request.app[STATE]
    return await _health(
        request, lambda: dumps({"models": [model_entry(m) for m in state.models]}).encode()
    )


async def ps(request: web.Request) -> web.StreamResponse:
    """``GET /api/ps``: models currently in memory (used ones, or ``--loaded``)."""
    state = request.app[STATE]

    def body() -> bytes:
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
        models = [
            {
                **model_entry(m),
                "expires_at": expires,
                "size_vram": model_entry(m)["size"],
                "context_length": 4096,
            }
            for m in state.loaded
        ]
        for entry in models:
            del entry["modified_at"]
        return dumps({"models": models}).encode()

    return await _health(request, body)


async def chat(request: web.Request) -> web.StreamResponse:
    """``POST /api/chat``."""
    return await _native_generate(request, chat=True)


async def generate(request: web.Request) -> web.StreamResponse:
    """``POST /api/generate``."""
    return await _native_generate(request, chat=False)


async def _native_generate(request: web.Request, *, chat: bool) -> web.StreamResponse:
    t0 = time.monotonic_ns()
    state = request.app[STATE]
    behaviour = state.plan("chat")
    body = request["json"]
    requested = body.get("model") if isinstance(body, dict) else None
    streaming = not (isinstance(body, dict) and body.get("stream") is False)

    def err(status: int, message: str | None) -> web.Response:
        return status_error(behaviour, requested, status, message)

    early = await preamble(request, behaviour, error=err, streaming=streaming)
    if early is not None:
        return early
    if body is None:
        return native_error(400, "missing request body")
    if body is INVALID_JSON or not isinstance(body, dict):
        return native_error(400, "invalid character looking for beginning of value")
    if not isinstance(requested, str) or not requested:
        return native_error(400, "model is required")
    if find_model(state, requested) is None:
        return native_error(404, f"model '{requested}' not found")
    await state.ensure_loaded(find_model(state, requested) or requested)
    stamp = created_at()
    head = {"model": requested, "created_at": stamp}
    if (chat and not body.get("messages")) or (not chat and not body.get("prompt")):
        # Real Ollama: an empty conversation/prompt just loads the model, one object, no stream.
        empty: dict[str, Any] = (
            {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        )
        keep = body.get("keep_alive")
        reason = "unload" if keep in (0, "0", "0s", "0m") else "load"
        return web.json_response({**head, **empty, "done": True, "done_reason": reason},
                                 dumps=dumps)
    options = body.get("options")
    limit = positive_int(options.get("num_predict")) if isinstance(options, dict) else None
    own = continue_from(state.tokens, body.get("messages")) if chat else state.tokens
    tokens, reason = cap_tokens(own, limit)
    schema = ollama_schema(body)
    if schema is not None:
        tokens = (json_text(schema, "".join(tokens)),)
    call = tool_call(body, state.tool_calls) if chat else None
    calls = [{"function": {"name": call[0], "arguments": call[1]}}] if call else []
    if calls:
        tokens = ()
    if chat:
        prompt = prompt_tokens_for_messages(body.get("messages"))
    else:
        prompt = prompt_tokens_for_text(body.get("prompt"), body.get("system"))
    t1 = time.monotonic_ns()

    def final(content: str) -> dict[str, Any]:
        end = time.monotonic_ns()
        load = t1 - t0 if behaviour.mode == "loading" else 0
        piece: dict[str, Any] = (
            {"message": {"role": "assistant", "content": content}}
            if chat
            else {"response": content}
        )
        if calls and not streaming:
            piece["message"]["tool_calls"] = calls
        done = {
            **head,
            **piece,
            "done": True,
            "done_reason": reason,
            "total_duration": end - t0,
            "load_duration": load,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": t1 - t0 - load,
            "eval_count": len(tokens),
            "eval_duration": end - t1,
        }
        if not behaviour.usage:
            for key in ("prompt_eval_count", "prompt_eval_duration", "eval_count",
                        "eval_duration"):
                del done[key]
        return done

    if not streaming:
        return await answer_whole(
            request,
            behaviour,
            body=lambda: dumps(final("".join(tokens))).encode(),
            content_type=JSON_TYPE,
            error=err,
            generation_chunks=len(tokens),
        )
    prefix = dumps(head)[:-1] + (
        ',"message":{"role":"assistant","content":' if chat else ',"response":'
    )
    suffix = '},"done":false}\n' if chat else ',"done":false}\n'
    chunks = [(prefix + dumps(tok) + suffix).encode() for tok in tokens]
    if calls:  # Ollama streams whole tool calls on a line of their own
        chunks = [(prefix + '"","tool_calls":' + dumps(calls) + suffix).encode()]
    plan = StreamPlan(
        content_type="application/x-ndjson",
        chunks=chunks,
        tail=lambda: (dumps(final("")) + "\n").encode(),
        error_line=(dumps({"error": behaviour.message or MIDSTREAM_MESSAGE}) + "\n").encode(),
        malformed_line=(prefix + '"\n').encode(),
    )
    return await answer_stream(request, behaviour, plan)


def create_app(state: FakeState) -> web.Application:
    """The fake Ollama application around ``state`` (usable in-process too)."""
    app = web.Application(middlewares=[record_requests], client_max_size=BODY_LIMIT)
    add_control_routes(app, state)
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/generate", generate)
    OllamaOpenAI().add_routes(app)
    add_manage_routes(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = base_arg_parser(
        "Fake Ollama server for tests.", "llama3.2:1b", "Hello from fake-ollama."
    )
    parser.add_argument(
        "--loaded", action="append", metavar="NAME", help="model shown as in memory by /api/ps"
    )
    args = parser.parse_args(argv)
    state = FakeState(
        models=args.models or ["llama3.2:1b"],
        loaded=args.loaded or [],
        reply=args.reply,
        reply_tokens=args.reply_tokens,
        max_recorded=args.max_recorded,
    )
    serve(create_app(state), args)


if __name__ == "__main__":
    main()
