"""The OpenAI Responses face: ``/v1/responses`` (create, retrieve, delete, input items);
the request's translation in ``bodies.py`` and ``tools.py``, replies in ``encoders.py``,
stored responses in ``store.py``."""

from aiohttp import web

from ..http.state import ConductorState
from .routes import ResponsesRoutes


def add_routes(app: web.Application, state: ConductorState) -> None:
    """Every route of the Responses face, bound to ``state``; its store opens with the app."""
    ResponsesRoutes(state).add_routes(app)
