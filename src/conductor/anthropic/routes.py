"""The Anthropic Messages API: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Claude Code and the ``anthropic`` client speak this. Requests are translated onto DEMI's
own chain (``bodies.py``) and answered through ``relay.answer``, like the other faces, so
failover, hedging, mid-stream continuation, routing and metrics are the same; replies are
shaped by ``encoders.py``. Errors use Anthropic's error object (``http/errors.py`` picks
it for these paths). Headers Anthropic's clients add (``anthropic-version``,
``anthropic-beta``, ``x-stainless-*``) change nothing: the body says what is asked.
"""

from __future__ import annotations

import json

from aiohttp import web

from ...llm import ReplyStream
from ..bodies import parse_body
from ..http.errors import JSON_TYPE, ApiError
from ..http.state import ConductorState
from ..relay import Collected, answer
from .bodies import CountTokensBody, MessagesBody
from .encoders import AnthropicSSE, anthropic_json

_dumps = json.JSONEncoder(separators=(",", ":")).encode

CLAUDE_PREFIX = "claude-"
"""Anthropic's model names. Claude Code names one of them in every request (its default, or
its small model for side tasks) and a user cannot always change both, so on this face they
route through the chain like DEMI's own aliases."""


def check_model(state: ConductorState, model: str) -> None:
    """A 404 ``not_found_error`` for a model DEMI does not serve on this face."""
    if model in state.catalog or model.startswith(CLAUDE_PREFIX):
        return
    raise ApiError(
        404,
        f"model: {model} does not exist on this DEMI server; use one of: "
        + ", ".join(state.catalog.names) + " (or any claude-* name)",
        param="model", code="model_not_found",
    )


class AnthropicRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages`` (Claude Code adds ``?beta=true``: the same request)."""
        state = self.state
        body = await parse_body(request, state.max_body, MessagesBody)
        check_model(state, body.model)
        messages, options = body.chat()
        # Anthropic reports the prompt's size before the reply: DEMI's estimate stands in
        # until (and unless) the server reports its own count at the end.
        estimate = state.llm.estimate_tokens(messages, options.get("tools", ()))

        def sse(reply: ReplyStream) -> AnthropicSSE:
            return AnthropicSSE(state.next_id("msg_"), reply.model, estimate)

        def whole(got: Collected) -> bytes:
            return anthropic_json(got, state.next_id("msg_"), estimate)

        return await answer(state, request, messages, options,
                            stream=sse if body.stream else None, whole=whole)

    async def count_tokens(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/count_tokens``: DEMI's calibrated estimate of the prompt."""
        state = self.state
        body = await parse_body(request, state.max_body, CountTokensBody)
        check_model(state, body.model)
        messages, options = body.chat()
        count = state.llm.estimate_tokens(messages, options.get("tools", ()))
        return web.Response(body=_dumps({"input_tokens": count}).encode(),
                            content_type=JSON_TYPE)
