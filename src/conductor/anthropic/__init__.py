"""The Anthropic face: ``/v1/messages`` and ``/v1/messages/count_tokens``; request bodies
and their translation in ``bodies.py``, replies in ``encoders.py``."""

from aiohttp import web

from ..http.state import ConductorState
from .routes import AnthropicRoutes


def add_routes(app: web.Application, state: ConductorState) -> None:
    """Every route of the Anthropic face, bound to ``state``."""
    AnthropicRoutes(state).add_routes(app)
