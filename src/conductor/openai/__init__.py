"""The OpenAI face: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``,
``/v1/embeddings``; request bodies in ``bodies.py``, replies in ``encoders.py``."""

from aiohttp import web

from ..http.state import ConductorState
from .completions import CompletionRoutes
from .embeddings import EmbeddingRoutes
from .routes import OpenAIRoutes


def add_routes(app: web.Application, state: ConductorState) -> None:
    """Every route of the OpenAI face, bound to ``state``."""
    OpenAIRoutes(state).add_routes(app)
    CompletionRoutes(state).add_routes(app)
    EmbeddingRoutes(state).add_routes(app)
