"""Helpers for turning foreign network errors into short, log-safe reasons.

The guide's log line reads ``Ollama inference failed: Connection refused``: reasons are the
plain cause, not a traceback or a library's long advice text.
"""

from __future__ import annotations

import errno

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
