"""DEMI's one error tree for the LLM layer.

Every foreign error (``httpx``, ``aiohttp``, ``ollama``, JSON decoding, timeouts) is mapped
into this tree at the provider boundary, so the failover logic and the HTTP API only ever
see these classes::

    DemiError                      anything DEMI raises on purpose (src.core.errors)
    ├── ConfigError                bad configuration; start-up stops (src.core.errors)
    ├── UnknownProviderError       force_provider()/routing named a provider that is not configured
    ├── RequestError               the caller's request is wrong (DEMI's own checks: HTTP 400)
    │   └── CannotExpress          this provider has no way to say the request; try the next
    ├── ProviderError              one provider could not serve a request; fails over
    │   ├── ProviderUnavailable    connection refused/reset, DNS failure: nothing is listening
    │   ├── ProviderTimeout        connect, first-token or between-chunk bound exceeded
    │   ├── ProviderBusy           429 / 503: overloaded or model still loading
    │   ├── ModelNotFound          the configured model is not on that server (404)
    │   ├── ProviderResponseError  5xx, malformed or truncated reply, error line mid-stream
    │   ├── ProviderRejected       the server refused this request (400/422): neither its failure
    │   │                          nor the caller's mistake; the next provider is asked
    │   └── EmbeddedModelLoading   the embedded model is still loading (not a health failure)
    ├── AllProvidersFailed         every provider in the chain failed (the guide's messages)
    ├── RequestRejected            every provider asked refused the request (HTTP 4xx, each reason)
    ├── StreamInterrupted          a stream broke after text already reached the caller
    └── Closed                     the LLM layer was closed (shutting down); ask again later

Anything else escaping the LLM layer (a ``TypeError``, a ``KeyError``) is a DEMI bug: no
provider catches it, so it never counts against a provider's health or triggers failover.

``ProviderError.retryable`` says whether the next provider should be tried. Only the
provider modules construct ``ProviderError``; only ``report.py`` builds ``AllProvidersFailed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import ConfigError, DemiError


class UnknownProviderError(DemiError, ValueError):
    """A provider name that is not configured was requested."""

    def __init__(self, name: object, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        choices = ", ".join(repr(k) for k in self.known)
        super().__init__(
            f"Unknown provider {name!r}: configured providers are {choices} "
            "(or None for automatic selection)"
        )


class RequestError(DemiError):
    """The caller's own request is invalid; retrying it on another provider cannot help.

    Raised for an upstream 400 (bad options, a prompt over the server's hard context limit)
    and for input DEMI rejects itself (no messages, unknown role). Does not count against a
    provider's health.
    """

    def __init__(self, message: str, *, provider: str | None = None, status: int = 400) -> None:
        self.provider = provider
        self.status = status
        super().__init__(message)


class CannotExpress(RequestError):
    """A provider has no equivalent for a field of the request (``field`` names it).

    Not a failure of the provider and not a mistake of the caller: the chain skips that
    provider without counting anything and tries the next; only if none can take the
    request does the caller get a 400 naming the field.
    """

    def __init__(self, field: str, reason: str, *, approximate: bool = False) -> None:
        self.field = field
        self.reason = reason
        self.approximate = approximate
        """The server's own OpenAI layer would serve the request without ``field`` (Ollama's
        ``/v1`` ignores ``tool_choice`` and still offers the tools): when no provider can
        express the request exactly, DEMI serves it there the same way, and says so."""
        super().__init__(f"{field}: {reason}")


class ProviderError(DemiError):
    """One provider failed to serve one request. ``reason`` is short and log-safe."""

    retryable = True
    counts_against_health = True

    def __init__(self, provider: str, reason: str, *, status: int | None = None) -> None:
        self.provider = provider
        self.reason = reason
        self.status = status
        super().__init__(reason)


class ProviderUnavailable(ProviderError):
    """Nothing answers at the provider's address (refused, reset, DNS failure)."""


class ProviderTimeout(ProviderError):
    """The provider exceeded the connect, first-token or between-chunk time bound."""


class ProviderBusy(ProviderError):
    """The provider is overloaded (429/503). ``retry_after`` is in seconds when given."""

    def __init__(
        self, provider: str, reason: str, *, status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, reason, status=status)
        self.retry_after = retry_after


class ModelNotFound(ProviderError):
    """The configured model is not installed or loaded on that provider."""


class ProviderResponseError(ProviderError):
    """A 5xx, a malformed or truncated reply, or an error line in the middle of a stream."""


class ProviderRejected(ProviderError):
    """The server answered this request with a 4xx refusal (400, 422: bad options, a prompt
    over its hard context limit, a feature its model lacks).

    That is the server's answer, not a sign of ill health and not proof that the caller's
    request is wrong (another server may take it): it counts against nothing, never cancels
    a racing attempt, and the next provider is asked. Only when every provider asked
    rejected the request does the caller get the rejection (:class:`RequestRejected`).
    """

    retryable = True
    counts_against_health = False


class EmbeddedModelLoading(ProviderError):
    """The embedded model is still loading (or restarting); try the next provider, do not mark
    it failed."""

    counts_against_health = False


class AllProvidersFailed(DemiError):
    """Every provider in the chain failed for this request.

    The message starts with the guide's wording (``Both Ollama and LMStudio providers
    failed`` or ``Ollama provider failed and fallback is disabled``) followed by each
    provider's reason and what to do.
    """

    def __init__(self, message: str, errors: Sequence[ProviderError]) -> None:
        self.errors = tuple(errors)
        super().__init__(message)


class Overloaded(DemiError):
    """Every usable provider is at its ``max_concurrency`` and DEMI's own queue
    (``llm.queue``) is full, or the request waited ``max_wait`` seconds for a slot.

    ``retry_after`` is seconds until a slot is likely free, computed from the measured
    service time of the work ahead; ``waiting`` how many requests were queued.
    """

    def __init__(self, message: str, *, retry_after: float, waiting: int) -> None:
        self.retry_after = retry_after
        self.waiting = waiting
        super().__init__(message)


class RequestRejected(DemiError):
    """Every provider that was asked refused the request (each one's reason is in the
    message); ``status`` is the refusal's HTTP status (the first one's)."""

    def __init__(self, message: str, errors: Sequence[ProviderRejected]) -> None:
        self.errors = tuple(errors)
        self.status = next((e.status for e in errors if e.status), None) or 400
        super().__init__(message)


class StreamInterrupted(DemiError):
    """A stream failed after part of the reply was already delivered to the caller.

    DEMI never splices another provider's output onto a partial reply, so the caller gets
    this error instead of a silently truncated answer.
    """

    def __init__(self, provider: str, reason: str, delivered_chars: int) -> None:
        self.provider = provider
        self.reason = reason
        self.delivered_chars = delivered_chars
        super().__init__(
            f"The {provider} stream broke after {delivered_chars} characters were sent: "
            f"{reason}. Ask again to get a complete answer."
        )


class Closed(DemiError, RuntimeError):
    """The LLM layer was closed (DEMI is shutting down); no new request is accepted."""


__all__ = [
    "AllProvidersFailed",
    "CannotExpress",
    "Closed",
    "ConfigError",
    "DemiError",
    "EmbeddedModelLoading",
    "ModelNotFound",
    "ProviderBusy",
    "ProviderError",
    "ProviderRejected",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RequestError",
    "RequestRejected",
    "StreamInterrupted",
    "UnknownProviderError",
]
