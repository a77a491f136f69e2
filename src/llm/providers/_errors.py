"""The one translation of foreign errors into DEMI's tree, shared by every network provider.

Both provider kinds speak HTTP through ``aiohttp`` (Ollama's official client rides on it via
``_aiohttp_transport``), so a connection error, an HTTP status and a malformed body mean the
same thing whichever server sent it. Each provider calls these functions at its boundary and
catches only the types listed in :data:`FOREIGN`; anything else is a DEMI bug and
propagates untouched (logged with its traceback by the conductor, never counted against a
provider).

The guide's log line reads ``Ollama inference failed: Connection refused``: reasons are the
plain cause, not a traceback or a library's long advice text.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping

import aiohttp

from ..errors import (
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderRejected,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
)

FOREIGN: tuple[type[BaseException], ...] = (
    aiohttp.ClientError, OSError, json.JSONDecodeError, UnicodeDecodeError,
)
"""What the network and a server's bytes may raise (``TimeoutError`` is an ``OSError``)."""

_ERRNO_TEXT = {
    errno.ECONNREFUSED: "Connection refused",
    errno.ECONNRESET: "Connection reset",
    errno.EHOSTUNREACH: "Host unreachable",
    errno.ENETUNREACH: "Network unreachable",
    errno.ETIMEDOUT: "Connection timed out",
    errno.EPIPE: "Connection closed",
}


def connection_reason(exc: BaseException) -> str:
    """The most specific reason found anywhere in the exception's cause/context chain."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        code = getattr(node, "errno", None)
        if code in _ERRNO_TEXT:
            return _ERRNO_TEXT[code]
        text = str(node).lower()
        if "connection refused" in text or "connect call failed" in text:
            return "Connection refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "Host name not found"
        if "temporary failure in name resolution" in text:
            return "Host name not found"
        node = node.__cause__ or node.__context__
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is not None and str(candidate):
            return str(candidate).splitlines()[0][:200]
    return type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds; HTTP dates are ignored."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_text(body: bytes | str) -> str:
    """Extract the message from either error shape, or the raw text when it is not JSON.

    >>> error_text(b'{"error": "No models loaded"}')
    'No models loaded'
    >>> error_text('{"error": {"message": "Loading model", "type": "unavailable_error"}}')
    'Loading model'
    """
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        return str(err)[:300]
    return raw.strip()[:300]


def map_foreign(name: str, display_name: str, exc: BaseException, timeout: str) -> ProviderError:
    """One of :data:`FOREIGN` (or ``TimeoutError``) as DEMI's error; ``timeout`` words a timeout.

    Raises the exception again if it is none of them: that is a DEMI bug, not the server's.
    """
    if isinstance(exc, TimeoutError):  # asyncio's, aiohttp's ServerTimeoutError, ETIMEDOUT
        return ProviderTimeout(name, timeout)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ProviderResponseError(name, "connection closed in the middle of the reply")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ProviderUnavailable(name, connection_reason(exc))
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return ProviderResponseError(name, f"malformed reply from {display_name}")
    raise exc


def map_status(
    name: str, display_name: str, status: int, body: bytes | str,
    headers: Mapping[str, str] | None, *, not_found: str,
) -> ProviderError | RequestError:
    """An HTTP error answer as DEMI's error. ``not_found`` is the reason for a missing model."""
    text = error_text(body)
    lowered = text.lower()
    if status == 404 or "no models loaded" in lowered or (
        "model" in lowered and "not found" in lowered
    ):
        return ModelNotFound(name, not_found.replace("{text}", text), status=status)
    if status in (429, 503):
        retry_after = retry_after_seconds(headers.get("Retry-After")) if headers else None
        return ProviderBusy(name, f"busy ({status}): {text}", status=status,
                            retry_after=retry_after)
    if status in (400, 422):  # the server's refusal of this request: another may take it
        return ProviderRejected(name, f"{display_name} rejected the request: {text}",
                                status=status)
    if status in (401, 403):
        return ProviderUnavailable(
            name, f"HTTP {status}: the server refused the API key: {text}", status=status
        )
    return ProviderResponseError(name, f"HTTP {status}: {text}", status=status)


def malformed(name: str, display_name: str) -> ProviderResponseError:
    """A reply whose JSON parses but does not have the shape the protocol promises."""
    return ProviderResponseError(name, f"malformed reply from {display_name}")
