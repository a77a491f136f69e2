"""HTTP errors in each protocol's own shape, and the middleware that guarantees one.

A client must get an answer it can parse whatever went wrong, so every error leaving the
conductor is built here:

* ``/v1/messages`` and below (Anthropic clients): ``{"type": "error", "error": {"type",
  "message"}}``, the type chosen by status (:data:`_ANTHROPIC_TYPES`);
* the rest of ``/v1/*`` (OpenAI clients): ``{"error": {"message", "type", "param", "code"}}``;
* everything else (Ollama clients, health, admin): ``{"error": "<text>"}``.

Handlers raise :class:`ApiError`, or let the LLM layer's errors pass: those are answered
from one registry keyed by exception class (:data:`LLM_ERRORS`, the starlette way), the
same for every route. aiohttp's own HTTP errors (404, 405, 413) and any unexpected
exception are reshaped by :func:`from_exception`, which the app's middleware calls. An unexpected
exception is a DEMI bug: a 500 ``internal_error`` whose text names only the exception's
type, logged at ERROR with its traceback (the log line itself quotes no message content).
Providers never catch such an exception, so it never counts against one (no failover, no
open circuit).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ...llm import (
    AllProvidersFailed,
    CannotExpress,
    Closed,
    DemiError,
    Overloaded,
    RequestError,
    RequestRejected,
    StreamInterrupted,
    UnknownProviderError,
)

_DUMPS_KW: dict[str, Any] = {"separators": (",", ":")}
JSON_TYPE = "application/json"

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
"""Anthropic's error types by status; any other 4xx is ``invalid_request_error`` and any
other 5xx ``api_error``. Every provider failing (503) is ``overloaded_error``: the type
Anthropic's clients (Claude Code among them) treat as "try again shortly"."""


class ApiError(Exception):
    """An HTTP error answer. ``param``/``code``/``type`` only show in the OpenAI shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        faces: dict[str, tuple[int, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _OPENAI_TYPES.get(status, "server_error")
        self.extra = extra
        self.headers = headers
        """Sent with the answer (``Retry-After``)."""
        self.faces = faces
        """(status, message) for a face that answers this differently, by face name
        (``ollama``, ``anthropic``): each in its own server's words."""


def is_anthropic_path(path: str) -> bool:
    """Whether errors for ``path`` use the Anthropic shape (``/v1/messages`` and below)."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def is_openai_path(path: str) -> bool:
    """Whether errors for ``path`` use the OpenAI shape (the rest of ``/v1``)."""
    return path.startswith("/v1/") or path == "/v1"


def anthropic_error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status."""
    known = _ANTHROPIC_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def anthropic_error_body(exc: ApiError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` as the Anthropic API answers."""
    return {"type": "error",
            "error": {"type": anthropic_error_type(exc.status), "message": exc.message}}


def openai_error_body(exc: ApiError) -> dict[str, Any]:
    """``{"error": {...}}`` exactly as the OpenAI API (and the ``openai`` client) expects."""
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                      "code": exc.code}}


def simple_error_body(exc: ApiError) -> dict[str, Any]:
    """Ollama's shape, ``{"error": "<text>"}``, plus any extra fields (admin uses them)."""
    body: dict[str, Any] = {"error": exc.message}
    if exc.extra:
        body.update(exc.extra)
    return body


def error_response(exc: ApiError, path: str) -> web.Response:
    """The response for ``exc`` in the shape the endpoint at ``path`` speaks."""
    face = ("anthropic" if is_anthropic_path(path) else "openai" if is_openai_path(path)
            else "ollama")
    if exc.faces and face in exc.faces:
        status, message = exc.faces[face]
        exc = ApiError(status, message, param=exc.param, code=exc.code, extra=exc.extra,
                       headers=exc.headers)
    if face == "anthropic":
        body = anthropic_error_body(exc)
    elif face == "openai":
        body = openai_error_body(exc)
    else:
        body = simple_error_body(exc)
    return web.Response(
        status=exc.status, text=json.dumps(body, **_DUMPS_KW), content_type=JSON_TYPE,
        headers=exc.headers,
    )


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    """Reword aiohttp's plain-text errors so they say what is wrong and what to do."""
    status = exc.status
    if status == 404:
        return ApiError(404, f"no such endpoint: {request.method} {request.path}",
                        code="not_found")
    if status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return ApiError(405, f"method {request.method} is not allowed on {request.path}"
                        + (f"; use {allowed}" if allowed else ""), code="method_not_allowed")
    if status == 413:
        return body_too_large(request.app[MAX_BODY_KEY])
    return ApiError(status, exc.reason or "request failed")


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"request body is larger than the {limit} bytes allowed "
        "(conductor.max_body_bytes): send a shorter conversation",
        code="request_too_large",
    )


MAX_BODY_KEY: web.AppKey[int] = web.AppKey("demi_max_body", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""What an aiohttp middleware receives as ``handler``."""


def _caller_error(exc: DemiError) -> ApiError:
    assert isinstance(exc, RequestError)
    status = exc.status if 400 <= exc.status < 500 else 400
    param = exc.field if isinstance(exc, CannotExpress) else None
    return ApiError(status, str(exc), param=param, code="invalid_request")


def _rejected(exc: DemiError) -> ApiError:
    assert isinstance(exc, RequestRejected)
    status = exc.status if 400 <= exc.status < 500 else 400
    return ApiError(status, str(exc), code="rejected_by_provider")


def _all_failed(exc: DemiError) -> ApiError:
    return ApiError(503, str(exc), code="all_providers_failed", type="server_error")


def _closed(exc: DemiError) -> ApiError:
    return ApiError(503, "DEMI is shutting down: send the request again once it is back",
                    code="shutting_down", type="server_error")


def _interrupted(exc: DemiError) -> ApiError:
    return ApiError(503, str(exc), code="stream_interrupted", type="server_error")


OLLAMA_BUSY = "server busy, please try again.  maximum pending requests exceeded"
"""Ollama's own words when its queue is full (``OLLAMA_MAX_QUEUE``), with its 503."""


def _overloaded(exc: DemiError) -> ApiError:
    assert isinstance(exc, Overloaded)
    seconds = str(max(1, math.ceil(exc.retry_after)))
    return ApiError(
        429, str(exc), code="overloaded", type="rate_limit_error",
        headers={"Retry-After": seconds},
        faces={"ollama": (503, f"{OLLAMA_BUSY} ({exc})"), "anthropic": (529, str(exc))},
    )


def _unknown_provider(exc: DemiError) -> ApiError:
    assert isinstance(exc, UnknownProviderError)
    return ApiError(400, str(exc), param="provider", extra={"providers": list(exc.known)})


LLM_ERRORS: dict[type[DemiError], Callable[[DemiError], ApiError]] = {
    RequestError: _caller_error,
    RequestRejected: _rejected,
    AllProvidersFailed: _all_failed,
    Closed: _closed,
    StreamInterrupted: _interrupted,
    UnknownProviderError: _unknown_provider,
    Overloaded: _overloaded,
}
"""How each of the LLM layer's errors is answered over HTTP (looked up along the class's
MRO, so a subclass is answered as its nearest registered base)."""


def llm_error_answer(exc: DemiError) -> ApiError | None:
    """The answer for one of the LLM layer's errors, or None when none is registered."""
    for cls in type(exc).__mro__:
        answer = LLM_ERRORS.get(cls)  # type: ignore[call-overload]
        if answer is not None:
            return answer(exc)
    return None


def from_exception(exc: Exception, request: web.Request, logger: logging.Logger) -> ApiError:
    """The answer for an exception a handler let escape (ApiError is handled before this)."""
    if isinstance(exc, DemiError):
        answer = llm_error_answer(exc)
        if answer is not None:
            return answer
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return _from_http_exception(exc, request)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        # The client went away; this answer is only written if it is still there.
        logger.debug("Client went away during %s %s", request.method, request.path)
        return ApiError(503, "the connection was reset", code="connection_reset")
    log_bug(logger, exc, f"while serving {request.method} {request.path}")
    return internal_error(exc, "while serving this request; it keeps running")


def log_bug(logger: logging.Logger, exc: BaseException, where: str) -> None:
    """Log a DEMI bug at ERROR with its traceback; the message names only the type."""
    logger.error("Unexpected %s %s (a DEMI bug)", type(exc).__name__, where, exc_info=exc)


def internal_error(exc: BaseException, context: str) -> ApiError:
    """The 500 answer for a DEMI bug: names the exception's type, never its text."""
    return ApiError(
        500,
        f"DEMI hit an internal error ({type(exc).__name__}) {context}. "
        "Please report it with the server log.",
        code="internal_error", type="server_error",
    )
