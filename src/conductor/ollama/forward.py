"""Calls only an Ollama server can answer, forwarded to the configured one as they are.

Model management (``/api/pull``, ``/api/push``, ``/api/delete``, ``/api/copy``,
``/api/create``) acts on Ollama's model store, so it goes to the Ollama provider's server
and its answer comes back untouched: status, content type and body, streamed progress
lines included, chunk by chunk as Ollama writes them. No failover: another provider has
no such store. When Ollama cannot be reached the caller gets a 502 that says so.

Preload and unload (``/api/chat`` with no messages, ``/api/generate`` with no prompt, with
or without ``keep_alive: 0``) go there too, but they are hints: with Ollama down or not
configured, DEMI answers as Ollama would (``done_reason`` ``load`` / ``unload``), since the
fallback providers load their models on demand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Mapping
from typing import Any

from aiohttp import web

from ...llm import OllamaInference, ProviderError
from ..http.errors import JSON_TYPE, ApiError
from ..http.state import ConductorState
from .encoders import created_at

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_CUT = _dumps({"error": "Ollama closed the connection"}).encode() + b"\n"


def unloads(keep_alive: Any) -> bool:
    """``keep_alive`` 0 (number or string) asks Ollama to unload the model now."""
    return keep_alive in (0, "0", "0s", "0m", "0h") or keep_alive == 0.0


class OllamaForwarder:
    """Forwards one request to the Ollama provider's server, over that provider's own
    pooled session and error mapping (:meth:`OllamaInference.forward`)."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def _provider(self) -> OllamaInference | None:
        provider = self.state.llm.ollama
        return provider if isinstance(provider, OllamaInference) else None

    def ollama_model(self, requested: str) -> str:
        """The Ollama model a DEMI name means: itself if it is Ollama's, else the configured one."""
        provider = self.state.llm.ollama
        if provider is None or requested not in self.state.catalog:
            return requested
        model = provider.model or requested
        names = set(self.state.catalog.names)
        return requested if requested == model or requested not in names else model

    async def forward(
        self, request: web.Request, path: str, body: bytes | AsyncIterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send ``body`` to Ollama's ``path`` with the same method; stream the answer back."""
        provider = self._provider()
        if provider is None:
            raise ApiError(502, f"{request.path} goes to an Ollama server, and none is "
                           "configured: set llm.ollama.base_url")
        resp: web.StreamResponse | None = None
        try:
            async with provider.forward(request.method, path, body, headers) as upstream:
                headers = {"Content-Type": upstream.content_type} if upstream.content_type else {}
                resp = web.StreamResponse(status=upstream.status, headers=headers)
                await resp.prepare(request)
                async for piece in upstream.body:
                    await resp.write(piece)
        except ProviderError as exc:
            if resp is not None and resp.prepared:  # cut half way: end as Ollama would
                await resp.write_eof(_CUT)
                return resp
            raise ApiError(
                502, f"Ollama at {provider.cfg.base_url} is not reachable ({exc.reason}): "
                f"{request.path} needs the Ollama server; start it (ollama serve) and retry",
            ) from None
        await resp.write_eof()
        return resp

    async def blob(self, request: web.Request) -> web.StreamResponse:
        """``HEAD`` / ``POST /api/blobs/:digest`` (``ollama create`` from a GGUF): to Ollama
        as they are, the upload streamed through (a GGUF is gigabytes; no body limit, no
        copy in memory)."""
        headers = {"Content-Type": request.headers.get("Content-Type",
                                                        "application/octet-stream")}
        if request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        body: bytes | AsyncIterable[bytes] = (
            request.content.iter_any() if request.method == "POST" and request.body_exists
            else b"")
        return await self.forward(request, request.path, body, headers)

    async def load_or_unload(
        self, request: web.Request, path: str, model: str, keep_alive: Any, chat: bool,
    ) -> web.StreamResponse:
        """Preload or unload ``model`` on Ollama; answered locally if Ollama is not there."""
        body: dict[str, Any] = {"model": self.ollama_model(model), "stream": False}
        if chat:
            body["messages"] = []
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if self._provider() is not None:
            try:
                return await self.forward(request, path, _dumps(body).encode())
            except ApiError:
                self.state.logger.debug("Ollama not reachable for a preload/unload of %s",
                                        model)
        answer: dict[str, Any] = {"model": model, "created_at": created_at()}
        answer["message" if chat else "response"] = (
            {"role": "assistant", "content": ""} if chat else "")
        answer.update(done=True, done_reason="unload" if unloads(keep_alive) else "load")
        return web.Response(body=_dumps(answer).encode(), content_type=JSON_TYPE)
