"""What makes the HTTP face safe to expose: origins, host names, the API key, CORS, the bind.

Checked in this order by the app's middleware, before any other work:

* **Origin** (:meth:`Guard.check_origin`). A browser sends ``Origin`` with every
  cross-origin request, and sends a "simple" POST (``Content-Type: text/plain``) without
  asking first. A request whose ``Origin`` is not allowed is answered 403 before its body
  is read, so a web page the user happens to visit can neither use nor steer DEMI.
  Allowed by default (the list Ollama adopted after CVE-2024-28224):

  - ``http://`` and ``https://`` origins on a loopback name: ``localhost``,
    ``*.localhost``, ``127.0.0.0/8``, ``[::1]`` and ``0.0.0.0``, on any port (the status
    page on ``/ui`` is one of these);
  - the schemes desktop and editor apps load their pages from: ``app://``, ``file://``,
    ``tauri://``, ``vscode-webview://`` and ``vscode-file://``.

  ``Origin: null`` (sandboxed frames, some ``file:`` pages) is refused, as is every other
  origin, browser extensions included (``chrome-extension://``, ``moz-extension://``),
  unless ``conductor.cors_origins`` lists it. Entries there are exact origins or patterns
  with ``*`` (``chrome-extension://*``, ``https://*.example.com``); ``"*"`` allows every
  origin. Requests with no ``Origin`` (curl, SDKs, servers) are unaffected.
* **Host** (:meth:`Guard.check_host`), against DNS rebinding: a page on
  ``evil.example`` that re-points its name at 127.0.0.1 reaches DEMI as a same-origin
  page, whose requests carry no ``Origin`` on GET. While DEMI is bound to loopback, a
  ``Host`` that is not a loopback name or address is answered 403. ``conductor.allowed_hosts``
  adds names (a reverse proxy's, a LAN name; ``*`` patterns allowed, ``"*"`` turns the
  check off). Bound off loopback, the API key (required there) is the protection.
* **CORS.** Every allowed origin gets ``Access-Control-Allow-Origin`` on its answers and a
  keyless answer to its preflight (browsers send no credentials on a preflight).
* **API key** (``conductor.api_key`` / ``DEMI_API_KEY``): when set, every route except
  ``/health``, ``/health/ready`` (probes from orchestrators carry no key) and ``/ui`` (a
  static page holding no data; it asks for the key and sends it on every call it makes)
  answers 401 unless the request carries the key as ``Authorization: Bearer <key>`` (what
  the ``openai`` client sends) or ``x-api-key: <key>``. The comparison is constant-time.
* :func:`check_exposure` refuses to serve a non-loopback address without a key: an open
  ``/admin/provider`` and an open model to anyone on the network is never what was meant.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from aiohttp import web

from ...core.errors import ConfigError
from .errors import ApiError

OPEN_PATHS = frozenset({"/health", "/health/ready", "/ui"})
"""Routes that answer without the key."""

APP_SCHEMES = frozenset({"app", "file", "tauri", "vscode-webview", "vscode-file"})
"""Origin schemes allowed by default: pages of desktop and editor apps on this machine."""

_ALLOW_HEADERS = ("Authorization, Content-Type, X-API-Key, anthropic-version, "
                  "anthropic-beta, OpenAI-Organization, OpenAI-Project")
_ALLOW_METHODS = "GET, POST, DELETE, HEAD, OPTIONS"
_EXPOSE_HEADERS = "X-DEMI-Provider, X-DEMI-Degraded, X-DEMI-Spillover, Retry-After"


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


def is_local_name(name: str) -> bool:
    """Whether a host name as a browser shows it (no port) names this machine.

    >>> [is_local_name(n) for n in ("localhost", "ui.localhost", "[::1]", "0.0.0.0",
    ...                             "127.0.0.9", "localhost.evil.example", "10.0.0.1")]
    [True, True, True, True, True, False, False]
    """
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:]*)(?::\d*)?$")


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port (IPv6 keeps its brackets).

    >>> host_name("localhost:8420"), host_name("[::1]:8420"), host_name("Demi.LAN")
    ('localhost', '[::1]', 'demi.lan')
    """
    match = _HOST_PORT.match(host_header.strip())
    return (match.group(1) if match else host_header).lower()


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


def _patterns(entries: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...], bool]:
    """(exact entries, ``*`` patterns, whether ``"*"`` allows everything), lower-cased."""
    exact: set[str] = set()
    patterns: list[str] = []
    for entry in entries:
        entry = entry.strip().lower().rstrip("/")
        if entry == "*":
            return frozenset(), (), True
        if "*" in entry:
            patterns.append(entry)
        elif entry:
            exact.add(entry)
    return frozenset(exact), tuple(patterns), False


def _matches(value: str, exact: frozenset[str], patterns: tuple[str, ...]) -> bool:
    return value in exact or any(fnmatchcase(value, p) for p in patterns)


class Guard:
    """The origin, host and key checks and the CORS headers for one app."""

    def __init__(
        self,
        api_key: str | None,
        cors_origins: Iterable[str] = (),
        *,
        bind_host: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self._key = api_key.encode() if api_key else None
        self._origins, self._origin_patterns, self._any_origin = _patterns(cors_origins)
        hosts, self._host_patterns, any_host = _patterns(allowed_hosts)
        self._hosts = hosts | {host_name(bind_host)}
        self._check_hosts = is_loopback(bind_host) and not any_host

    # --- origins --------------------------------------------------------------------

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page of ``origin`` may use DEMI."""
        origin = origin.strip().lower().rstrip("/")
        if self._any_origin or _matches(origin, self._origins, self._origin_patterns):
            return True
        if origin == "null":
            return False
        parts = urlsplit(origin)
        if parts.scheme in APP_SCHEMES:
            return True
        if parts.scheme not in ("http", "https"):
            return False
        try:
            name = parts.hostname or ""
            parts.port  # noqa: B018 - a bad port is a bad origin
        except ValueError:
            return False
        return is_local_name(f"[{name}]" if ":" in name else name)

    def check_origin(self, request: web.Request) -> None:
        """Raise a 403 ApiError for a browser request from an origin that is not allowed."""
        origin = request.headers.get("Origin")
        if origin is None or self.origin_allowed(origin):
            return
        raise ApiError(
            403,
            f"requests from the web origin {origin!r} are not allowed: a web page may not "
            "use DEMI unless conductor.cors_origins lists its origin",
            code="origin_not_allowed",
        )

    # --- host -----------------------------------------------------------------------

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a ``Host`` header may reach DEMI (always, when bound off loopback)."""
        if not self._check_hosts or not host_header:
            return True
        name = host_name(host_header)
        return is_local_name(name) or _matches(name, self._hosts, self._host_patterns)

    def check_host(self, request: web.Request) -> None:
        """Raise a 403 ApiError for a ``Host`` that is not this machine's (DNS rebinding)."""
        host = request.headers.get("Host")
        if self.host_allowed(host):
            return
        raise ApiError(
            403,
            f"the host name {host_name(host or '')!r} is not allowed while DEMI listens on "
            "loopback; to reach DEMI under that name (a reverse proxy, a LAN name) add it "
            "to conductor.allowed_hosts",
            code="host_not_allowed",
        )

    # --- key ------------------------------------------------------------------------

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

    # --- CORS -----------------------------------------------------------------------

    def allowed_origin(self, request: web.Request) -> str | None:
        """The value for Access-Control-Allow-Origin, or None (no CORS headers at all)."""
        origin = request.headers.get("Origin")
        if not origin or not self.origin_allowed(origin):
            return None
        return origin

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
            resp.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
            resp.headers["Vary"] = "Origin"
