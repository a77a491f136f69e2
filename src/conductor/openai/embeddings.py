"""``POST /v1/embeddings``: OpenAI's embeddings over the chain's embedding models.

The ``model`` a caller names is answered with, but each provider uses its own configured
embedding model (``embedding_model``): RAG apps ship their own default names, which mean
nothing to the local servers. ``encoding_format: "base64"`` (what the ``openai`` client asks
for by default) is little-endian float32, base64-encoded.
"""

from __future__ import annotations

import array
import base64
import sys

from aiohttp import web

from ..bodies import parse_body
from ..http.state import ConductorState
from ..relay import embeddings_reply
from .bodies import EmbeddingsBody


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
        app.router.add_post("/v1/embeddings", self.embeddings)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await parse_body(request, self.state.max_body, EmbeddingsBody)
        got = await self.state.llm.embed(body.texts())
        as_base64 = body.encoding_format == "base64"
        tokens = got.prompt_tokens or 0
        return embeddings_reply(self.state, got, {
            "object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": float32_base64(v) if as_base64 else v}
                     for i, v in enumerate(got.vectors)],
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
