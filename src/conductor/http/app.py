"""Building the conductor's aiohttp application around a ``UnifiedLLMInference``.

Where a request enters: :func:`create_app` wires one middleware (origin, host and API key
checks and the CORS preflight from ``guard.py``, errors, metrics, the DEBUG access line) and
the route groups: ``openai`` (``/v1``), ``anthropic`` (``/v1/messages``), ``responses``
(``/v1/responses``, with its store's lifecycle), ``ollama`` (``/api`` and ``/``) and the
admin routes (health, status, metrics, admin).

The app does not own the LLM unless asked (``manage_llm=True``, what :func:`serve` uses):
tests build an app around an LLM they started themselves, and several apps can share one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ...core.config import DemiConfig
from ...llm import AllProvidersFailed, RequestRejected, UnifiedLLMInference
from .. import anthropic, ollama, openai, responses
from .admin import AdminRoutes
from .errors import MAX_BODY_KEY, ApiError, Handler, error_response, from_exception
from .guard import Guard
from .state import PROVIDER_HEADER, ConductorState

STATE_KEY: web.AppKey[ConductorState] = web.AppKey("demi_conductor", ConductorState)
LOGGER_NAME = "demi.conductor"


def _middleware(state: ConductorState, guard: Guard) -> Middleware:
    """Check the key, count, time and shape every request; every exception becomes an answer."""
    metrics = state.metrics
    logger = state.logger

    @web.middleware
    async def conductor_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        debug = logger.isEnabledFor(logging.DEBUG)
        t0 = time.perf_counter() if debug else 0.0
        state.in_flight += 1
        try:
            guard.check_origin(request)
            guard.check_host(request)
            preflight = guard.preflight(request)
            if preflight is not None:
                resp: web.StreamResponse = preflight
            else:
                guard.check_key(request)
                resp = await handler(request)
        except ApiError as exc:
            resp = error_response(exc, request.path)
            if exc.status == 401:
                resp.headers["WWW-Authenticate"] = 'Bearer realm="demi"'
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are answers, not errors
            resp = error_response(from_exception(exc, request, logger), request.path)
        except Exception as exc:
            if isinstance(exc, AllProvidersFailed | RequestRejected):
                metrics.all_failed(exc.errors)
            resp = error_response(from_exception(exc, request, logger), request.path)
        finally:
            state.in_flight -= 1
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        provider = resp.headers.get(PROVIDER_HEADER, "none")
        metrics.request(endpoint, provider, resp.status)
        if debug:
            # Method, path, status and time only: never bodies (they hold message content).
            logger.debug("%s %s %d %s %.1fms", request.method, request.path, resp.status,
                         provider, (time.perf_counter() - t0) * 1000)
        return resp

    return conductor_middleware


def create_app(
    llm: UnifiedLLMInference,
    config: DemiConfig,
    *,
    manage_llm: bool = False,
    logger: logging.Logger | None = None,
) -> web.Application:
    """The conductor's HTTP application serving ``llm``.

    With ``manage_llm`` the app starts ``llm`` on start-up and closes it on clean-up (after
    in-flight requests finished); otherwise the caller owns the LLM's lifecycle.
    """
    log = logger or logging.getLogger(LOGGER_NAME)
    state = ConductorState(llm, config, log)
    max_body = config.conductor.max_body_bytes
    conductor = config.conductor
    guard = Guard(conductor.api_key, conductor.cors_origins, bind_host=conductor.host,
                  allowed_hosts=conductor.allowed_hosts)
    app = web.Application(middlewares=[_middleware(state, guard)], client_max_size=max_body)
    app.on_response_prepare.append(guard.on_prepare)
    app[STATE_KEY] = state
    app[MAX_BODY_KEY] = max_body
    openai.add_routes(app, state)
    anthropic.add_routes(app, state)
    responses.add_routes(app, state)
    ollama.add_routes(app, state)
    AdminRoutes(state).add_routes(app)
    if manage_llm:
        app.cleanup_ctx.append(_llm_lifecycle(llm))
    return app


def _llm_lifecycle(
    llm: UnifiedLLMInference,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await llm.start()
        try:
            yield
        finally:
            await llm.close()

    return lifecycle

