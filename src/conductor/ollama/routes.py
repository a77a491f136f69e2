"""The Ollama-compatible API: ``/api/chat``, ``/api/generate``, ``/api/tags``, ``/api/version``.

Also ``GET /`` (``Ollama is running``). Ollama's rules, not OpenAI's: ``stream`` absent
means *stream* (NDJSON, one object per line); ``"stream": false`` gives one object. The
last object has ``done: true``, ``done_reason``, durations in nanoseconds,
``prompt_eval_count`` and ``eval_count``.
Errors are ``{"error": "<text>"}``; a stream that breaks after text was sent keeps its 200
status and ends with an ``{"error": ...}`` line, which the ``ollama`` client raises on.
Request bodies are declared in ``ollama_bodies.py``, replies encoded by ``encoders.py``
(:class:`OllamaNDJSON`, :func:`ollama_json`), and ``relay.answer`` runs them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from ...llm import ReplyStream
from ..bodies import json_object, parse_body, read_body, read_json_object, validate
from ..http.errors import JSON_TYPE, ApiError
from ..http.state import ConductorState
from ..relay import Collected, answer
from .bodies import ChatBody, GenerateBody, LoadBody, ShowBody
from .encoders import OllamaNDJSON, ollama_json
from .forward import OllamaForwarder

# The Ollama API level DEMI speaks; clients compare it to decide which features exist.
OLLAMA_API_VERSION = "0.12.6"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class OllamaRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state
        self.forwarder = OllamaForwarder(state)
        self._version = _dumps({"version": OLLAMA_API_VERSION, "demi": state.version}).encode()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)  # HEAD / comes with it
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/show", self.show)
        app.router.add_get("/api/ps", self.ps)
        for path in ("/api/pull", "/api/push", "/api/copy", "/api/create"):
            app.router.add_post(path, self.manage)
        app.router.add_delete("/api/delete", self.manage)
        app.router.add_head("/api/blobs/{digest}", self.forwarder.blob)
        app.router.add_post("/api/blobs/{digest}", self.forwarder.blob)

    async def manage(self, request: web.Request) -> web.StreamResponse:
        """Model management: Ollama's own store, so Ollama's own answer (progress streamed)."""
        raw = await read_body(request, self.state.max_body)
        json_object(raw)  # a JSON object, or a 400
        return await self.forwarder.forward(request, request.path, bytes(raw))

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
            "model_info": {}, "capabilities": list(self.state.catalog.capabilities(body.model))}
        return web.Response(body=_dumps(info).encode(), content_type=JSON_TYPE)

    def _model(self, model: str, *, serves: str | None = None) -> None:
        """404 for a name DEMI does not serve; Ollama's 400 for an embedding model asked to
        ``serves`` (chat, generate)."""
        catalog = self.state.catalog
        if model not in catalog:
            raise ApiError(404, f"model '{model}' not found")
        if serves is not None and catalog.embedding_only(model):
            raise ApiError(400, f'"{model}" does not support {serves}')

    async def chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter_ns()
        data = await read_json_object(request, self.state.max_body)
        if not data.get("messages"):  # no conversation: Ollama's preload / unload call
            return await self._load(request, data, chat=True)
        body = validate(data, ChatBody)
        self._model(body.model, serves="chat")
        messages = [m.as_dict() for m in body.messages]
        return await self._answer(request, messages, body.chat_options(), body.streams,
                                  started, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter_ns()
        data = await read_json_object(request, self.state.max_body)
        if not data.get("prompt") and not data.get("images"):
            return await self._load(request, data, chat=False)
        body = validate(data, GenerateBody)
        self._model(body.model, serves="generate")
        return await self._answer(request, body.messages(), body.chat_options(), body.streams,
                                  started, chat=False)

    async def _load(
        self, request: web.Request, data: dict[str, Any], *, chat: bool
    ) -> web.StreamResponse:
        if data.get("messages") not in (None, []) and chat:
            validate(data, ChatBody)  # "messages": "" or {} is a type error, not a preload
        body = validate(data, LoadBody)
        self._model(body.model)
        return await self.forwarder.load_or_unload(
            request, request.path, body.model, body.keep_alive, chat)

    async def _answer(
        self, request: web.Request, messages: list[Any], options: dict[str, Any],
        stream: bool, started: int, *, chat: bool,
    ) -> web.StreamResponse:
        def ndjson(reply: ReplyStream) -> OllamaNDJSON:
            return OllamaNDJSON(reply, started, chat)

        def whole(got: Collected) -> bytes:
            return ollama_json(got, started, chat)

        return await answer(self.state, request, messages, options,
                            stream=ndjson if stream else None, whole=whole)
