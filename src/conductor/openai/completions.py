"""``POST /v1/completions``: OpenAI's legacy text completion, served through the chat chain.

The prompt becomes the one user message of a chat (the local servers' completions would
skip the chat template, and the chain, its failover and its breakers, works on chats);
the reply is shaped as ``text_completion`` objects, streamed as server-sent events ending
in ``data: [DONE]`` or whole. ``relay.answer`` runs it like every other reply.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from ...llm import ChatChunk, ReplyStream
from ..bodies import parse_body
from ..http.errors import ApiError, openai_error_body
from ..http.state import ConductorState
from ..relay import Collected, answer
from .bodies import CompletionBody
from .encoders import SSE_TYPE, finish_reason
from .routes import check_model

_dumps = json.JSONEncoder(separators=(",", ":")).encode


class CompletionSSE:
    """``text_completion`` events: one per piece of text, a finish event, usage if asked."""

    content_type = SSE_TYPE

    def __init__(self, ident: str, model: str, include_usage: bool) -> None:
        self._base = {"id": ident, "object": "text_completion", "created": int(time.time()),
                      "model": model}
        self._include_usage = include_usage
        self.served_by: tuple[str, ...] = ()

    def _event(self, obj: dict[str, Any]) -> str:
        return "data: " + _dumps({**self._base, **obj}) + "\n\n"

    def _choice(self, text: str, reason: str | None) -> str:
        return self._event({"choices": [{"text": text, "index": 0, "logprobs": None,
                                         "finish_reason": reason}]})

    def text(self, text: str) -> bytes:
        return self._choice(text, None).encode()

    def final(self, chunk: ChatChunk) -> bytes:
        out = self._choice(chunk.text, None) if chunk.text else ""
        finish: dict[str, Any] = {"choices": [{
            "text": "", "index": 0, "logprobs": None,
            "finish_reason": finish_reason(chunk.finish_reason),
        }]}
        if self.served_by:  # a mid-stream continuation: name every provider that served
            finish["demi"] = {"providers": list(self.served_by)}
        out += self._event(finish)
        if self._include_usage:
            p, c = chunk.prompt_tokens or 0, chunk.completion_tokens or 0
            out += self._event({"choices": [], "usage": {
                "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
        return (out + "data: [DONE]\n\n").encode()

    def error(self, err: ApiError) -> bytes:
        return b"data: " + _dumps(openai_error_body(err)).encode() + b"\n\n"


def completion_json(got: Collected, ident: str) -> bytes:
    final = got.final
    p, c = final.prompt_tokens or 0, final.completion_tokens or 0
    return _dumps({
        "id": ident, "object": "text_completion", "created": int(time.time()),
        "model": got.model,
        "choices": [{"text": got.text, "index": 0, "logprobs": None,
                     "finish_reason": finish_reason(final.finish_reason)}],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }).encode()


class CompletionRoutes:
    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.completions)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await parse_body(request, state.max_body, CompletionBody)
        check_model(state, body.model, chat=True)
        messages = [{"role": "user", "content": body.text()}]
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def sse(reply: ReplyStream) -> CompletionSSE:
            return CompletionSSE(state.next_id("cmpl-"), reply.model, include_usage)

        def whole(got: Collected) -> bytes:
            return completion_json(got, state.next_id("cmpl-"))

        return await answer(state, request, messages, body.options(),
                            stream=sse if body.stream else None, whole=whole)
