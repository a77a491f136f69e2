"""A scripted provider: the chain walk's ``MockTransport``.

Tests of the walk (failover, the hedge race, continuation, cancellation, routing) need a
provider whose every reply they decide and whose timing they control without sleeping.
:class:`ScriptedProvider` is a real :class:`~src.llm.providers.base.Provider`; each call
to ``stream()`` takes the next step of its script (then ``then`` for every later call):

* :class:`Reply`  text in pieces, optionally held back until an ``asyncio.Event`` is set;
* :class:`Fail`   one of DEMI's errors before any text (refused, busy, loading, ...);
  :func:`rejected` is a server's 400, :func:`skip` a request it cannot express;
* :class:`Hang`   never a byte, until DEMI gives up on it (cancels or closes it);
* :class:`Cut`    some pieces, then a break, as a server dying mid-reply;
* :class:`Crash`  a DEMI bug escaping the provider (it must propagate untouched).

It counts what a real server would see: requests, replies finished, streams DEMI
abandoned (closed or cancelled before their end) and streams open right now, so a test
can assert that no upstream is left sending after the caller went away.

The process fakes in ``fakes/`` stand in for real servers over HTTP; this one stands in
for a provider inside the process, where interleavings can be controlled exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from ..llm import (
    CannotExpress,
    ChatChunk,
    ChatRequest,
    DemiError,
    Embeddings,
    HealthReport,
    Provider,
    ProviderError,
    ProviderRejected,
    ProviderResponseError,
    ProviderUnavailable,
    ToolCall,
)


def words(text: str) -> list[str]:
    """``text`` in pieces with their leading whitespace, as servers stream tokens.

    >>> words("Hello from DEMI.")
    ['Hello', ' from', ' DEMI.']
    """
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


@dataclass(frozen=True)
class Reply:
    """A reply: ``text`` in :func:`words` (or ``pieces``), after ``gate`` is set if given."""

    text: str = "Hello from a scripted provider."
    pieces: Sequence[str] | None = None
    gate: asyncio.Event | None = None
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int | None = 7


@dataclass(frozen=True)
class Fail:
    """``error(provider_name, reason, ...)`` raised before any text (after ``gate``, if any)."""

    error: type[ProviderError] = ProviderUnavailable
    reason: str = "Connection refused"
    status: int | None = None
    gate: asyncio.Event | None = None

    def exception(self, name: str) -> DemiError:
        return self.error(name, self.reason, status=self.status)


@dataclass(frozen=True)
class Skip:
    """The provider cannot express the request (:class:`CannotExpress` on ``field``)."""

    field: str = "tools"
    reason: str = "this provider cannot say it"


@dataclass(frozen=True)
class Hang:
    """No byte ever; the stream ends only when DEMI cancels or closes it.

    ``closing``: once cancelled, the stream takes until this event is set to finish
    (an upstream whose close is slow), so a test can act while DEMI waits for it.
    """

    closing: asyncio.Event | None = None


@dataclass(frozen=True)
class Cut:
    """The first ``after`` pieces of ``text``, then a break (``ProviderResponseError``)."""

    text: str = "A reply that breaks half way through."
    after: int = 2
    reason: str = "connection closed in the middle of the reply"
    gate: asyncio.Event | None = None
    """Set: the break waits for it (after the pieces were sent)."""


@dataclass(frozen=True)
class Crash:
    """A DEMI bug inside the provider: ``error`` (not one of DEMI's errors) escapes it."""

    error: Exception = field(default_factory=lambda: TypeError("a bug in the provider"))
    gate: asyncio.Event | None = None


Step = Reply | Fail | Skip | Hang | Cut | Crash


def rejected(text: str = "invalid request", status: int = 400) -> Fail:
    """A server answering 400/422: its refusal of this request."""
    return Fail(ProviderRejected, f"the server rejected the request: {text}", status=status)


@dataclass
class Counts:
    """What the provider's server would have seen."""

    requests: list[ChatRequest] = field(default_factory=list)
    finished: int = 0
    """Replies sent to their end."""
    abandoned: int = 0
    """Streams DEMI closed or cancelled before their end (the server stops generating)."""
    open: int = 0
    """Streams in progress right now."""
    closing: int = 0
    """Cancelled streams that began a slow close (:class:`Hang` with ``closing``)."""
    health_checks: int = 0
    warmed: int = 0
    waited_ready: int = 0


class ScriptedProvider(Provider):
    """A provider that follows its script; see the module docstring."""

    def __init__(
        self,
        name: str,
        *steps: Step,
        then: Step | None = None,
        display_name: str | None = None,
        kind: str = "scripted",
        model: str = "scripted-model",
        context_window: int = 8192,
        region: str | None = None,
        first_token_timeout: float | None = None,
        embedding_model: str | None = None,
        check: Callable[[ChatRequest], None] | None = None,
    ) -> None:
        super().__init__(name, display_name or name.capitalize(), model=model,
                         context_window=context_window, region=region)
        self.kind = kind  # type: ignore[misc]  # an instance may play any kind
        self.steps: deque[Step] = deque(steps)
        self.then: Step = then if then is not None else Reply(f"Hello from {name}.")
        self.first_token_timeout = first_token_timeout
        self.embedding_model = embedding_model
        self.check = check
        """Run on every request before its step (a real provider's own refusals, e.g.
        ``check_text_only``)."""
        self.counts = Counts()
        self.health_report = HealthReport(healthy=True, latency=0.001, models=(model,),
                                          model_present=True)
        self.health_gate: asyncio.Event | None = None
        self.ready = True
        """What :meth:`wait_ready` answers (a model that finished loading)."""
        self.closed = False

    def script(self, *steps: Step) -> None:
        """Queue more steps (taken before ``then``)."""
        self.steps.extend(steps)

    @property
    def requests(self) -> list[ChatRequest]:
        return self.counts.requests

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # type: ignore[override]
        step = self.steps.popleft() if self.steps else self.then
        counts = self.counts
        counts.requests.append(request)
        counts.open += 1
        ended = False
        try:
            if self.check is not None:
                self.check(request)
            if isinstance(step, Skip):
                raise CannotExpress(step.field, step.reason)
            if isinstance(step, Fail):
                if step.gate is not None:
                    await step.gate.wait()
                raise step.exception(self.name)
            if isinstance(step, Hang):
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    if step.closing is not None:
                        counts.closing += 1
                        await step.closing.wait()
                    raise
            if isinstance(step, Crash):
                if step.gate is not None:
                    await step.gate.wait()
                raise step.error
            if isinstance(step, Cut):
                for piece in words(step.text)[: step.after]:
                    yield ChatChunk(piece)
                if step.gate is not None:
                    await step.gate.wait()
                raise ProviderResponseError(self.name, step.reason)
            assert isinstance(step, Reply)
            if step.gate is not None:
                await step.gate.wait()
            pieces = list(step.pieces) if step.pieces is not None else words(step.text)
            for piece in pieces:
                yield ChatChunk(piece)
            counts.finished += 1
            ended = True  # closing after the final chunk is the normal end, not abandonment
            yield ChatChunk("", done=True, model=self.model, finish_reason=step.finish_reason,
                            prompt_tokens=step.prompt_tokens, completion_tokens=len(pieces),
                            tool_calls=step.tool_calls)
        except (GeneratorExit, asyncio.CancelledError):
            if not ended:
                counts.abandoned += 1
            raise
        finally:
            counts.open -= 1

    async def health(self) -> HealthReport:
        self.counts.health_checks += 1
        if self.health_gate is not None:
            await self.health_gate.wait()
        return self.health_report

    def set_health(self, healthy: bool, error: str | None = None, *,
                   loading: bool = False) -> None:
        """What the next health checks report."""
        self.health_report = HealthReport(
            healthy=healthy, latency=0.001, models=(self.model or "",) if healthy else (),
            model_present=healthy, loading=loading,
            error=None if healthy else (error or "down"))

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 (the interface's)
        self.counts.waited_ready += 1
        return self.ready

    async def warm(self, keep_for: float) -> bool:
        self.counts.warmed += 1
        return True

    async def embed(self, texts: list[str], model: str) -> Embeddings:
        """One small deterministic vector per text (from its SHA-256)."""
        vectors = [[b / 255 for b in hashlib.sha256(t.encode()).digest()[:4]] for t in texts]
        return Embeddings(vectors, model, self.name, prompt_tokens=sum(map(len, texts)))

    async def close(self) -> None:
        self.closed = True
