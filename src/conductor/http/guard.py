"""What makes the HTTP face safe to expose: the API key, CORS, and the bind-address check.

* **API key** (``conductor.api_key`` / ``DEMI_API_KEY``): when set, every route except
  ``/health``, ``/health/ready`` (probes from orchestrators carry no key) and ``/ui`` (a
  static page holding no data; it asks for the key and sends it on every call it makes)
  answers 401 unless the request carries the key as ``Authorization: Bearer <key>`` (what
  the ``openai`` client sends) or ``x-api-key: <key>``. The comparison is constant-time.
* **CORS** is off unless ``conductor.cors_origins`` lists origins: a browser app on another
  origin gets no ``Access-Control-*`` headers, so the browser refuses to hand it answers.
  Preflight ``OPTIONS`` requests for a listed origin are answered here, without the key
  (browsers never send credentials on a preflight).
* :func:`check_exposure` refuses to serve a non-loopback address without a key: an open
  ``/admin/provider`` and an open model to anyone on the network is never what was meant.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from ...core.errors import ConfigError
from .errors import ApiError

OPEN_PATHS = frozenset({"/health", "/health/ready", "/ui"})
"""Routes that answer without the key."""

_ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key"
_ALLOW_METHODS = "GET, POST, OPTIONS"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "": it may resolve to anything


def check_exposure(host: str, api_key: str | None) -> None:
    """Raise ConfigError (saying how to fix it) for a non-loopback bind without a key."""
    if api_key or is_loopback(host):
        return
    raise ConfigError(
        f"Refusing to listen on {host or 'every address'!s} without an API key: anyone who "
        "can reach it could use the models and /admin/provider. Set one with the "
        "environment variable DEMI_API_KEY=<a long random string> (or conductor.api_key "
        "in your config file), or bind to 127.0.0.1 (--host 127.0.0.1)."
    )


def presented_key(request: web.Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``x-api-key``."""
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


class Guard:
    """The key check and CORS headers for one app, applied by the app's middleware."""

    def __init__(self, api_key: str | None, cors_origins: tuple[str, ...]) -> None:
        self._key = api_key.encode() if api_key else None
        self._origins = frozenset(cors_origins)

    def check_key(self, request: web.Request) -> None:
        """Raise a 401 ApiError unless the request may pass."""
        if self._key is None or request.path in OPEN_PATHS:
            return
        key = presented_key(request)
        # compare_digest on bytes: constant-time whatever the lengths and contents.
        if key is not None and hmac.compare_digest(key.encode(), self._key):
            return
        raise ApiError(
            401,
            "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            if key is None else "invalid API key",
            code="invalid_api_key",
        )

    def allowed_origin(self, request: web.Request) -> str | None:
        """The value for Access-Control-Allow-Origin, or None (no CORS headers at all)."""
        origin = request.headers.get("Origin")
        if not origin or not self._origins:
            return None
        if "*" in self._origins:
            return "*"
        return origin if origin in self._origins else None

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a CORS preflight from an allowed origin, else None."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = self.allowed_origin(request)
        if origin is None:
            return None
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": _ALLOW_METHODS,
            "Access-Control-Allow-Headers": _ALLOW_HEADERS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })

    async def on_prepare(self, request: web.Request, resp: web.StreamResponse) -> None:
        """``on_response_prepare`` hook: CORS headers on every answer to an allowed origin.

        A signal rather than the middleware because streamed replies send their headers
        from inside the handler, before the middleware sees the response.
        """
        origin = self.allowed_origin(request)
        if origin is not None:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
