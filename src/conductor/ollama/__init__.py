"""The Ollama face: ``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``, model
management forwarded to Ollama; request bodies in ``bodies.py``, replies in ``encoders.py``."""

from aiohttp import web

from ..http.state import ConductorState
from .embeddings import EmbeddingRoutes
from .routes import OllamaRoutes


def add_routes(app: web.Application, state: ConductorState) -> None:
    """Every route of the Ollama face, bound to ``state``."""
    OllamaRoutes(state).add_routes(app)
    EmbeddingRoutes(state).add_routes(app)
