"""The Ollama-compatible API: ``/api/chat``, ``/api/generate``, ``/api/tags``, ``/api/version``.

Also ``GET /`` (``Ollama is running``). Ollama's rules, not OpenAI's: ``stream`` absent
means *stream* (NDJSON, one object per line); ``"stream": false`` gives one object. The
last object has ``done: true``, ``done_reason``, durations in nanoseconds,
``prompt_eval_count`` and ``eval_count``.
Errors are ``{"error": "<text>"}``; a stream that breaks after text was sent keeps its 200
status and ends with an ``{"error": ...}`` line, which the ``ollama`` client raises on.

``options.num_predict`` becomes ``max_tokens``, ``options.temperature`` and
``options.stop`` map directly, and every other option passes through to the provider.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from src.llm.errors import StreamInterrupted
from src.llm.stream import ReplyStream
from src.llm.types import ChatChunk

from .bodies import parse_body
from .errors import JSON_TYPE, ApiError, internal_error, log_bug
from .ollama_bodies import ChatBody, GenerateBody, ShowBody
from .relay import chunks_of, close_chunks, collect, finished, interrupted, open_reply
from .state import ConductorState

NDJSON_TYPE = "application/x-ndjson"
TEXT_TYPE = "text/plain; charset=utf-8"
# The Ollama API level DEMI speaks; clients compare it to decide which features exist.
OLLAMA_API_VERSION = "0.12.6"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def created_at() -> str:
    """RFC 3339 UTC with microseconds, as Ollama writes ``created_at``."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


class OllamaRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state
        self._version = _dumps({"version": OLLAMA_API_VERSION, "demi": state.version}).encode()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)  # HEAD / comes with it
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/show", self.show)
        app.router.add_get("/api/ps", self.ps)

    async def root(self, request: web.Request) -> web.Response:
        """What clients (and ``curl``) probe to see whether "Ollama" is up."""
        return web.Response(body=b"Ollama is running", content_type="text/plain",
                            charset="utf-8")

    async def version(self, request: web.Request) -> web.Response:
        return web.Response(body=self._version, content_type=JSON_TYPE)

    async def tags(self, request: web.Request) -> web.Response:
        return web.Response(body=self.state.catalog.ollama_tags, content_type=JSON_TYPE)

    async def ps(self, request: web.Request) -> web.Response:
        """``GET /api/ps``: DEMI loads no models itself, so none are listed."""
        return web.Response(body=b'{"models":[]}', content_type=JSON_TYPE)

    async def show(self, request: web.Request) -> web.Response:
        """``POST /api/show``: minimal details clients probe before chatting."""
        body = await parse_body(request, self.state.max_body, ShowBody)
        self._model(body.model)
        info = {"modelfile": "", "parameters": "", "template": "", "details": {
            "parent_model": "", "format": "gguf", "family": "demi", "families": ["demi"],
            "parameter_size": "", "quantization_level": ""},
            "model_info": {}, "capabilities": ["completion"]}
        return web.Response(body=_dumps(info).encode(), content_type=JSON_TYPE)

    def _model(self, model: str) -> None:
        if model not in self.state.catalog:
            raise ApiError(404, f"model '{model}' not found")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter_ns()
        body = (await parse_body(request, self.state.max_body, ChatBody)).check()
        self._model(body.model)
        messages = [m.as_dict() for m in body.messages]
        return await self._answer(request, messages, body.chat_options(), body.streams,
                                  started, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter_ns()
        body = await parse_body(request, self.state.max_body, GenerateBody)
        self._model(body.model)
        return await self._answer(request, body.messages(), body.chat_options(), body.streams,
                                  started, chat=False)

    async def _answer(
        self, request: web.Request, messages: list[Any], options: dict[str, Any],
        stream: bool, started: int, *, chat: bool,
    ) -> web.StreamResponse:
        state = self.state
        if stream:
            reply = await open_reply(state, messages, options)
            return await self._stream(request, reply, started, chat)
        got = await collect(state, messages, options)
        obj = _final(got.model, created_at(), got.text, got.final, got.reply, started, chat)
        return web.Response(
            body=_dumps(obj).encode(),
            headers=state.headers(got.reply.provider, got.reply.fallback_used, JSON_TYPE),
        )

    async def _stream(
        self, request: web.Request, reply: ReplyStream, started: int, chat: bool
    ) -> web.StreamResponse:
        state = self.state
        stamp = created_at()
        head = '{"model":' + _dumps(reply.model) + ',"created_at":"' + stamp + '",'
        if chat:
            text_head, text_tail = head + '"message":{"role":"assistant","content":', \
                '},"done":false}\n'
        else:
            text_head, text_tail = head + '"response":', ',"done":false}\n'
        resp = web.StreamResponse(headers=state.headers(reply.provider, reply.fallback_used,
                                                        NDJSON_TYPE))
        chunks = chunks_of(reply)
        try:
            await resp.prepare(request)
            async for chunk in chunks:
                if chunk.done:
                    obj = _final(reply.model, created_at(), chunk.text, chunk, reply, started,
                                 chat)
                    await resp.write_eof((_dumps(obj) + "\n").encode())
                    finished(state, reply)
                    return resp
                if chunk.text:
                    await resp.write((text_head + _dumps(chunk.text) + text_tail).encode())
            raise StreamInterrupted(reply.display_name, "the reply ended early", 0)
        except StreamInterrupted as exc:
            interrupted(state, reply, exc, "the client gets an error event, not a cut answer")
            await _end_with_error(resp, str(exc))
        except (ConnectionResetError, BrokenPipeError):
            state.logger.debug("Client went away during a %s stream", reply.display_name)
        except Exception as exc:
            if not resp.prepared:
                raise  # nothing sent yet: the middleware answers with a proper error
            log_bug(state.logger, exc, f"while streaming a {reply.display_name} reply")
            await _end_with_error(resp, internal_error(exc, "while streaming; the answer is "
                                                      "incomplete").message)
        finally:
            await close_chunks(chunks, reply)
        return resp


def _final(
    model: str, stamp: str, text: str, final: ChatChunk, reply: ReplyStream, started: int,
    chat: bool,
) -> dict[str, Any]:
    """The ``done: true`` object: reason, nanosecond durations and token counts."""
    total = time.perf_counter_ns() - started
    ttft = reply.time_to_first_token
    prompt_ns = min(total, int(ttft * 1e9)) if ttft is not None else 0
    obj: dict[str, Any] = {"model": model, "created_at": stamp}
    if chat:
        obj["message"] = {"role": "assistant", "content": text}
    else:
        obj["response"] = text
    obj.update(
        done=True,
        done_reason="length" if final.finish_reason == "length" else "stop",
        total_duration=total,
        load_duration=0,
        prompt_eval_count=final.prompt_tokens or 0,
        prompt_eval_duration=prompt_ns,
        eval_count=final.completion_tokens or 0,
        eval_duration=total - prompt_ns,
    )
    return obj


async def _end_with_error(resp: web.StreamResponse, message: str) -> None:
    """Ollama's mid-stream error: a last ``{"error": ...}`` line, status stays 200."""
    if not resp.prepared:
        return
    try:
        await resp.write_eof((_dumps({"error": message}) + "\n").encode())
    except (ConnectionResetError, BrokenPipeError):
        pass
