"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Replies are shaped exactly like OpenAI's (see PROTOCOLS.md): one ``chat.completion``
object, or server-sent events: a role chunk, content chunks, a finish chunk, a usage chunk
only when ``stream_options.include_usage`` is true, then ``data: [DONE]``, with the same
``id`` and ``created`` on every chunk. Errors use OpenAI's error object.

A stream that breaks after text was sent ends with ``data: {"error": {...}}`` and no
``[DONE]``: the ``openai`` client raises on it, so a cut answer never passes as complete.

Chunks are built from precomputed prefix/suffix strings around one ``json.dumps`` of the
text: the per-chunk cost is that dump and one write.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from src.llm.errors import StreamInterrupted
from src.llm.stream import ReplyStream

from .bodies import parse_body
from .errors import JSON_TYPE, ApiError, internal_error, log_bug, openai_error_body
from .openai_bodies import ChatCompletionBody
from .relay import (
    chunks_of,
    close_chunks,
    collect,
    finish_reason,
    finished,
    interrupted,
    open_reply,
)
from .state import ConductorState

SSE_TYPE = "text/event-stream"
_dumps = json.JSONEncoder(separators=(",", ":")).encode

def normalize_messages(messages: list[Any]) -> list[Any]:
    """OpenAI spellings the providers do not all know, rewritten (copy on write).

    The ``developer`` role is OpenAI's newer name for ``system``; content given as a list
    of text parts becomes one string (Ollama accepts only strings). Anything else is left
    for the LLM layer to validate.
    """
    out = messages
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        fixed = None
        if message.get("role") == "developer":
            fixed = {**message, "role": "system"}
        content = message.get("content")
        if isinstance(content, list) and content and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        ):
            fixed = {**(fixed or message), "content": "\n".join(p["text"] for p in content)}
        if fixed is not None:
            if out is messages:
                out = list(messages)
            out[i] = fixed
    return out


class OpenAIRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{model:.+}", self.model)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the aliases and the configured model names."""
        return web.Response(body=self.state.catalog.openai_list, content_type=JSON_TYPE)

    async def model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{model}``: one model object, or 404 model_not_found."""
        name = request.match_info["model"]
        self._check_model(name)
        entry = {"id": name, "object": "model", "created": int(self.state.started_wall),
                 "owned_by": "demi"}
        return web.Response(body=_dumps(entry).encode(), content_type=JSON_TYPE)

    def _check_model(self, model: str) -> None:
        if model not in self.state.catalog:
            raise ApiError(
                404,
                f"The model '{model}' does not exist on this DEMI server; use one of: "
                + ", ".join(self.state.catalog.names),
                param="model", code="model_not_found",
            )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await parse_body(request, state.max_body, ChatCompletionBody)
        self._check_model(body.model)
        messages = normalize_messages([m.as_dict() for m in body.messages])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        options = body.options()
        if body.stream:
            reply = await open_reply(state, messages, options)
            return await self._stream(request, reply, include_usage)
        return await self._whole(messages, options)

    async def _whole(self, messages: list[Any], options: dict[str, Any]) -> web.Response:
        state = self.state
        got = await collect(state, messages, options)
        final = got.final
        prompt = final.prompt_tokens or 0
        completion = final.completion_tokens or 0
        payload = {
            "id": state.next_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": got.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": got.text},
                "logprobs": None,
                "finish_reason": finish_reason(final.finish_reason),
            }],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }
        return web.Response(
            body=_dumps(payload).encode(),
            headers=state.headers(got.reply.provider, got.reply.fallback_used, JSON_TYPE),
        )

    async def _stream(
        self, request: web.Request, reply: ReplyStream, include_usage: bool
    ) -> web.StreamResponse:
        state = self.state
        head = (
            'data: {"id":"' + state.next_id("chatcmpl-")
            + '","object":"chat.completion.chunk","created":' + str(int(time.time()))
            + ',"model":' + _dumps(reply.model) + ',"choices":['
        )
        text_head = head + '{"index":0,"delta":{"content":'
        text_tail = '},"finish_reason":null}]}\n\n'
        pending = head + '{"index":0,"delta":{"role":"assistant","content":""}' + text_tail[1:]
        resp = web.StreamResponse(headers=state.headers(reply.provider, reply.fallback_used,
                                                        SSE_TYPE))
        chunks = chunks_of(reply)
        try:
            await resp.prepare(request)
            async for chunk in chunks:
                if chunk.text:
                    # The role chunk rides with the first text: one write, not two.
                    out = pending + text_head + _dumps(chunk.text) + text_tail
                    await resp.write(out.encode())
                    pending = ""
                if chunk.done:
                    tail = pending + head + '{"index":0,"delta":{},"finish_reason":"' \
                        + finish_reason(chunk.finish_reason) + '"}]}\n\n'
                    if include_usage:
                        p, c = chunk.prompt_tokens or 0, chunk.completion_tokens or 0
                        tail += (head + '],"usage":{"prompt_tokens":' + str(p)
                                 + ',"completion_tokens":' + str(c)
                                 + ',"total_tokens":' + str(p + c) + "}}\n\n")
                    await resp.write_eof((tail + "data: [DONE]\n\n").encode())
                    finished(state, reply)
                    return resp
            raise StreamInterrupted(reply.display_name, "the reply ended early", 0)
        except StreamInterrupted as exc:
            interrupted(state, reply, exc, "the client gets an error event, not a cut answer")
            err = ApiError(502, str(exc), code="stream_interrupted", type="server_error")
            await _end_with_error(resp, err)
        except (ConnectionResetError, BrokenPipeError):
            state.logger.debug("Client went away during a %s stream", reply.display_name)
        except Exception as exc:
            if not resp.prepared:
                raise  # nothing sent yet: the middleware answers with a proper error
            log_bug(state.logger, exc, f"while streaming a {reply.display_name} reply")
            await _end_with_error(resp, internal_error(exc, "while streaming; the answer is "
                                                      "incomplete"))
        finally:
            await close_chunks(chunks, reply)
        return resp


async def _end_with_error(resp: web.StreamResponse, err: ApiError) -> None:
    """A terminal error event and the end of the body, without ``[DONE]``.

    The HTTP response itself ends cleanly, so the client's pooled connection stays usable.
    Best effort: the client may already be gone.
    """
    if not resp.prepared:
        return
    try:
        await resp.write_eof(b"data: " + _dumps(openai_error_body(err)).encode() + b"\n\n")
    except (ConnectionResetError, BrokenPipeError):
        pass
