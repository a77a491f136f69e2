"""Foreign errors into DEMI's tree: one boundary per provider kind, driven by a table.

Every network provider speaks HTTP through ``aiohttp`` (Ollama's official client rides on
it via ``_aiohttp_transport``), so a refused connection, an HTTP status or a malformed body
means the same whichever server sent it. What differs per kind is what else it can meet:
the ``ollama`` client adds its own errors, httpx's and pydantic's. So:

* :func:`map_errors` is the context manager a provider wraps its network work in. DEMI's
  own errors pass through; a foreign exception listed in the kind's table becomes DEMI's
  error, raised ``from`` the original; anything else is a DEMI bug and propagates unchanged
  (the conductor answers 500 with its traceback, and it never counts against a provider).
* :class:`ErrorTable` holds ordered rows, exception type → factory; the first row the
  exception is an instance of wins, so a table reads like an ``if`` chain, most specific
  first. :data:`SHARED_ERRORS` is the table of the OpenAI-compatible kind and the base of
  Ollama's (``ollama.OLLAMA_ERRORS``). ``tests/unit/test_error_completeness.py`` fails when
  a class that aiohttp, httpx or ollama exports resolves to no row of a kind that meets it.
* :func:`map_status` is the one function turning an HTTP error status into DEMI's error.
* :data:`HINTS` is the only place where message text decides anything. Types and errno
  codes come first; text is left for what arrives as text alone (an error line in a 200
  stream, a 400 body, asyncio's "Multiple exceptions" which keeps no errno).

The guide's log line reads ``Ollama inference failed: Connection refused``: reasons are the
plain cause, not a traceback or a library's long advice text.
"""

from __future__ import annotations

import enum
import errno
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar, cast

import aiohttp
from aiohttp.http import HttpProcessingError

from ..errors import (
    DemiError,
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderRejected,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    RequestError,
)

# -- what message text may decide ---------------------------------------------------------


class Meaning(enum.Enum):
    """What a row of :data:`HINTS` concludes; a connection meaning's value is its reason."""

    REFUSED = "Connection refused"
    NO_HOST = "Host name not found"
    NO_MODEL = "the model is not on the server"
    LACKS_FEATURE = "the model lacks a feature the request uses"


HINTS: tuple[tuple[tuple[str, ...], Meaning], ...] = (
    # (substrings that must all occur, lower case; what they mean)
    (("connection refused",), Meaning.REFUSED),
    # asyncio's "Multiple exceptions: [Errno 111] Connect call failed (...), ..." (one per
    # address of a name such as localhost) keeps no errno, only this text.
    (("connect call failed",), Meaning.REFUSED),
    # The resolver's words, for errors that carry only text (httpx's, an injected transport).
    (("name or service not known",), Meaning.NO_HOST),  # glibc
    (("nodename nor servname",), Meaning.NO_HOST),  # macOS
    (("temporary failure in name resolution",), Meaning.NO_HOST),
    (("no models loaded",), Meaning.NO_MODEL),  # LM Studio's 400 with nothing loaded
    (("model", "not found"), Meaning.NO_MODEL),  # Ollama: model "x" not found, try pulling it
    (("does not support",), Meaning.LACKS_FEATURE),  # Ollama's 400 "x does not support tools"
)


def hinted(text: str, meaning: Meaning) -> str | None:
    """The text after the matching row's last substring if a row says ``meaning``, else None.

    >>> hinted("gemma:2b does not support tools", Meaning.LACKS_FEATURE)
    ' tools'
    >>> hinted("invalid options", Meaning.LACKS_FEATURE) is None
    True
    """
    lowered = text.lower()
    for words, said in HINTS:
        if said is meaning and all(w in lowered for w in words):
            return lowered.split(words[-1], 1)[1]
    return None


def says(text: str, meaning: Meaning) -> bool:
    """Whether a row of :data:`HINTS` reads ``meaning`` in ``text`` (case-insensitive)."""
    return hinted(text, meaning) is not None


# -- connection causes --------------------------------------------------------------------

_ERRNO_TEXT = {
    errno.ECONNREFUSED: Meaning.REFUSED.value,
    errno.ECONNRESET: "Connection reset",
    errno.EHOSTUNREACH: "Host unreachable",
    errno.ENETUNREACH: "Network unreachable",
    errno.ETIMEDOUT: "Connection timed out",
    errno.EPIPE: "Connection closed",
}

_DNS_FAILURES: tuple[type[BaseException], ...] = tuple(
    cls for cls in (socket.gaierror, getattr(aiohttp, "ClientConnectorDNSError", None))  # 3.10+
    if cls is not None
)
"""The resolver found no address: its errno is an ``EAI_*`` code, not an ``errno`` one."""


def connection_reason(exc: BaseException) -> str:
    """The most specific reason found anywhere in the exception's cause/context chain.

    Per link: its type (a DNS failure), then its errno, then :data:`HINTS`; failing all of
    them, the first line of the message.
    """
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, _DNS_FAILURES):
            return Meaning.NO_HOST.value
        code = getattr(node, "errno", None)
        if code in _ERRNO_TEXT:
            return _ERRNO_TEXT[code]
        text = str(node)
        for meaning in (Meaning.REFUSED, Meaning.NO_HOST):
            if says(text, meaning):
                return meaning.value
        node = node.__cause__ or node.__context__
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is not None and str(candidate):
            return str(candidate).splitlines()[0][:200]
    return type(exc).__name__


# -- the boundary ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Boundary:
    """What a factory needs to word its error: who failed, how a timeout is said here, and
    the model asked for (Ollama names it in ``ollama pull``)."""

    provider: str
    display_name: str
    timeout: str
    model: str = ""


Factory = Callable[[BaseException, Boundary], DemiError]
Row = tuple[type[BaseException], Factory]
E = TypeVar("E", bound=BaseException)


def row(cls: type[E], factory: Callable[[E, Boundary], DemiError]) -> Row:
    """One table row; typed so that a factory may take exactly the class it maps."""
    return (cls, cast(Factory, factory))


class ErrorTable:
    """Exception types → DEMI error factories, in order: the first matching row wins."""

    __slots__ = ("catches", "rows")

    def __init__(self, rows: Iterable[Row]) -> None:
        self.rows: tuple[Row, ...] = tuple(rows)
        self.catches: tuple[type[BaseException], ...] = tuple(cls for cls, _ in self.rows)

    def extended(self, rows: Iterable[Row]) -> ErrorTable:
        """This table with ``rows`` consulted first (a kind's own errors, then the shared)."""
        return ErrorTable((*rows, *self.rows))

    def factory_for(self, cls: type[BaseException]) -> Factory | None:
        """The factory of the first row ``cls`` is a subclass of; None: not a foreign error."""
        return next((factory for base, factory in self.rows if issubclass(cls, base)), None)

    def __repr__(self) -> str:
        return f"ErrorTable({', '.join(cls.__qualname__ for cls in self.catches)})"


class ErrorBoundary:
    """The context manager :func:`map_errors` returns; stateless, so one may be entered
    again and again (once per read of a body, say)."""

    __slots__ = ("_model", "_provider", "_table", "_timeout")

    def __init__(
        self, provider: _Named, table: ErrorTable, timeout: str | Callable[[], str], model: str,
    ) -> None:
        self._provider = provider
        self._table = table
        self._timeout = timeout
        self._model = model

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Never suppresses: returns None, or raises DEMI's error in place of the foreign one.
        if kind is None or exc is None or isinstance(exc, DemiError):
            return
        factory = self._table.factory_for(kind)
        if factory is None:
            return  # a DEMI bug (or a cancellation): propagates unchanged
        timeout = self._timeout() if callable(self._timeout) else self._timeout
        where = Boundary(self._provider.name, self._provider.display_name, timeout, self._model)
        raise factory(exc, where) from exc


class _Named(Protocol):
    name: str
    display_name: str


def map_errors(
    provider: _Named, table: ErrorTable, timeout: str | Callable[[], str], *, model: str = "",
) -> ErrorBoundary:
    """``with map_errors(self, TABLE, timeout):`` turns the table's foreign errors into DEMI's.

    ``timeout`` words a timeout; a callable is asked when the error happens (a reply clock
    knows then whether the first-token or the idle bound applied). Async code may use the
    plain ``with``: entering and leaving do no I/O.
    """
    return ErrorBoundary(provider, table, timeout, model)


# -- the shared table ------------------------------------------------------------------


def _timed_out(exc: BaseException, where: Boundary) -> ProviderTimeout:
    return ProviderTimeout(where.provider, where.timeout)


def _cut(exc: BaseException, where: Boundary) -> ProviderResponseError:
    return ProviderResponseError(where.provider, "connection closed in the middle of the reply")


def unreachable(exc: BaseException, where: Boundary) -> ProviderUnavailable:
    """Nothing answered: the reason is the connection's cause (refused, DNS, reset...)."""
    return ProviderUnavailable(where.provider, connection_reason(exc))


def garbled(exc: BaseException, where: Boundary) -> ProviderResponseError:
    """The server's bytes are not what the protocol promises."""
    return malformed(where.provider, where.display_name)


SHARED_ERRORS = ErrorTable((
    # Before OSError and ClientError: asyncio's, aiohttp's ServerTimeoutError and an
    # ETIMEDOUT socket error are all TimeoutError.
    row(TimeoutError, _timed_out),
    row(aiohttp.ServerDisconnectedError, _cut),
    row(aiohttp.ClientPayloadError, _cut),
    row(aiohttp.ClientError, unreachable),
    row(OSError, unreachable),
    row(json.JSONDecodeError, garbled),
    row(UnicodeDecodeError, garbled),
    # aiohttp wraps its parser's errors (ClientResponseError, ClientPayloadError); one that
    # escapes is still the server's broken HTTP, not a DEMI bug.
    row(HttpProcessingError, garbled),
))
"""What the network and a server's bytes may raise, for every provider kind."""


# -- HTTP statuses -----------------------------------------------------------------------


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


def map_status(
    name: str, display_name: str, status: int, body: bytes | str,
    headers: Mapping[str, str] | None, *, not_found: str,
) -> ProviderError | RequestError:
    """An HTTP error answer as DEMI's error. ``not_found`` is the reason for a missing model
    (``{text}`` in it is replaced by the server's message)."""
    text = error_text(body)
    if status == 404 or says(text, Meaning.NO_MODEL):
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
