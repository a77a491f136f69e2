"""``POST /api/embed`` and the older ``POST /api/embeddings``, over the chain's embedding
models (each provider uses its own configured ``embedding_model``)."""

from __future__ import annotations

import time

from aiohttp import web

from ..bodies import parse_body
from ..http.state import ConductorState
from ..relay import embeddings_reply
from .bodies import EmbedBody, LegacyEmbeddingsBody


class EmbeddingRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/embed", self.embed)
        app.router.add_post("/api/embeddings", self.legacy)

    async def embed(self, request: web.Request) -> web.Response:
        started = time.perf_counter_ns()
        body = await parse_body(request, self.state.max_body, EmbedBody)
        got = await self.state.llm.embed(body.texts())
        return embeddings_reply(self.state, got, {
            "model": body.model, "embeddings": got.vectors,
            "total_duration": time.perf_counter_ns() - started, "load_duration": 0,
            "prompt_eval_count": got.prompt_tokens or 0,
        })

    async def legacy(self, request: web.Request) -> web.Response:
        body = await parse_body(request, self.state.max_body, LegacyEmbeddingsBody)
        got = await self.state.llm.embed([body.prompt])
        return embeddings_reply(self.state, got, {"embedding": got.vectors[0]})
