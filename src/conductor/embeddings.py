"""Embeddings on both faces: ``POST /v1/embeddings``, ``/api/embed``, ``/api/embeddings``.

All three ask ``UnifiedLLMInference.embed`` (failover over the providers that have an
``embedding_model``) and shape its vectors as each API does. The ``model`` a caller names
is answered with, but each provider uses its own configured embedding model: RAG apps
ship their own default names, which mean nothing to the local servers.

OpenAI's ``encoding_format: "base64"`` (what the ``openai`` client asks for by default) is
little-endian float32, base64-encoded.
"""

from __future__ import annotations

import array
import base64
import json
import sys
import time
from typing import Any

from aiohttp import web

from ..llm.errors import AllProvidersFailed, Closed, RequestError
from ..llm.types import Embeddings
from .bodies import parse_body
from .http.errors import JSON_TYPE, ApiError
from .http.state import ConductorState
from .ollama.bodies import EmbedBody, LegacyEmbeddingsBody
from .openai.bodies import EmbeddingsBody

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def float32_base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding of one vector: little-endian float32."""
    packed = array.array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


class EmbeddingRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/embeddings", self.openai)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_post("/api/embeddings", self.legacy)

    async def _vectors(self, texts: list[str]) -> Embeddings:
        try:
            return await self.state.llm.embed(texts)
        except RequestError as exc:
            status = exc.status if 400 <= exc.status < 500 else 400
            raise ApiError(status, str(exc), code="invalid_request") from None
        except AllProvidersFailed as exc:
            raise ApiError(503, str(exc), code="all_providers_failed",
                           type="server_error") from None
        except Closed:
            raise ApiError(503, "DEMI is shutting down: send the request again once it is "
                           "back", code="shutting_down", type="server_error") from None

    def _reply(self, got: Embeddings, obj: dict[str, Any]) -> web.Response:
        headers = self.state.headers(got.provider, got.fallback_used, JSON_TYPE)
        return web.Response(body=_dumps(obj).encode(), headers=headers)

    async def openai(self, request: web.Request) -> web.Response:
        body = await parse_body(request, self.state.max_body, EmbeddingsBody)
        got = await self._vectors(body.texts())
        as_base64 = body.encoding_format == "base64"
        tokens = got.prompt_tokens or 0
        return self._reply(got, {
            "object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": float32_base64(v) if as_base64 else v}
                     for i, v in enumerate(got.vectors)],
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def embed(self, request: web.Request) -> web.Response:
        started = time.perf_counter_ns()
        body = await parse_body(request, self.state.max_body, EmbedBody)
        got = await self._vectors(body.texts())
        return self._reply(got, {
            "model": body.model, "embeddings": got.vectors,
            "total_duration": time.perf_counter_ns() - started, "load_duration": 0,
            "prompt_eval_count": got.prompt_tokens or 0,
        })

    async def legacy(self, request: web.Request) -> web.Response:
        body = await parse_body(request, self.state.max_body, LegacyEmbeddingsBody)
        got = await self._vectors([body.prompt])
        return self._reply(got, {"embedding": got.vectors[0]})
