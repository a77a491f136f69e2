"""The OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Replies are shaped exactly like OpenAI's (see PROTOCOLS.md) by the encoders in
``encoders.py`` (:class:`OpenAISSE`, :func:`openai_json`); the request body is declared in
``openai_bodies.py``; ``relay.answer`` runs the reply. Errors use OpenAI's error object.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ...llm import ReplyStream
from ..bodies import parse_body
from ..catalog import anthropic_model
from ..http.errors import JSON_TYPE, ApiError
from ..http.state import ConductorState
from ..relay import Collected, answer
from .bodies import ChatCompletionBody
from .encoders import OpenAISSE, openai_json

_dumps = json.JSONEncoder(separators=(",", ":")).encode
ANTHROPIC_VERSION = "anthropic-version"


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
        """``GET /v1/models``: the aliases and the configured model names.

        Anthropic's clients ask the same path (``anthropic.Anthropic().models.list()``) and
        say so with an ``anthropic-version`` header: they get Anthropic's list shape.
        """
        catalog = self.state.catalog
        body = catalog.anthropic_list if ANTHROPIC_VERSION in request.headers else (
            catalog.openai_list)
        return web.Response(body=body, content_type=JSON_TYPE)

    async def model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{model}``: one model object, or 404 model_not_found."""
        name = request.match_info["model"]
        self._check_model(name)
        entry: dict[str, object] = {"id": name, "object": "model",
                                    "created": int(self.state.started_wall), "owned_by": "demi"}
        if ANTHROPIC_VERSION in request.headers:
            entry = anthropic_model(name, self.state.catalog.created_stamp)
        return web.Response(body=_dumps(entry).encode(), content_type=JSON_TYPE)

    def _check_model(self, model: str) -> None:
        check_model(self.state, model)


    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await parse_body(request, state.max_body, ChatCompletionBody)
        check_model(state, body.model, chat=True)
        messages = normalize_messages([m.as_dict() for m in body.messages])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def sse(reply: ReplyStream) -> OpenAISSE:
            return OpenAISSE(state.next_id("chatcmpl-"), reply.model, include_usage)

        def whole(got: Collected) -> bytes:
            return openai_json(got, state.next_id("chatcmpl-"))

        return await answer(state, request, messages, body.options(),
                            stream=sse if body.stream else None, whole=whole)


def check_model(state: ConductorState, model: str, *, chat: bool = False) -> None:
    """A 404 in OpenAI's shape, listing the names DEMI serves, for a model it does not;
    with ``chat``, a 400 for an embedding model."""
    catalog = state.catalog
    if model not in catalog:
        raise ApiError(
            404,
            f"The model '{model}' does not exist on this DEMI server; use one of: "
            + ", ".join(catalog.names),
            param="model", code="model_not_found",
        )
    if chat and catalog.embedding_only(model):
        raise ApiError(400, f"The model '{model}' is an embedding model: it does not "
                       "support chat; use /v1/embeddings", param="model",
                       code="model_not_supported")
