"""Hedged first token: when a provider is slow to start, ask the next one too.

A hung server costs every request its whole first-token timeout before failover, and its
circuit opens only after that. With ``llm.hedge.enabled``, once a provider has produced
nothing for max(``min_delay``, ``delay_factor`` × its own p95 time to first token), the
walker sends the same request to the next usable provider as well; the first of the two to
produce text wins, and the other is cancelled (its connection is closed, so the server
stops generating). The loser is not counted as failed: being slow is not an error, and the
first-token timeout still opens its circuit if it really is hung.

Bounds: at most ``max_percent`` of the last 100 requests hedge (a healthy-but-slow primary
must not double the load on the fallback), and the embedded model is never a hedge target
unless ``llm.hedge.embedded`` says so (it shares this machine's CPU with DEMI).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ...core.config import HedgeConfig
from ..errors import CannotExpress, ProviderError, RequestError
from ..providers.base import Provider
from ..state.registry import ProviderPool
from ..types import ChatChunk, ChatRequest

WINDOW = 100
"""Requests (and first-token samples per provider) the bounds look back over."""


class HedgePolicy:
    """When to hedge, and the budget that keeps hedging rare."""

    def __init__(self, config: HedgeConfig) -> None:
        self.enabled = config.enabled
        self.to_embedded = config.embedded
        self._factor = config.delay_factor
        self._min_delay = config.min_delay
        self._max_per_window = config.max_percent * WINDOW / 100
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._ttft: dict[str, deque[float]] = {}
        self.requests = 0
        self.hedged = 0
        self.hedge_wins = 0

    def observe_ttft(self, name: str, seconds: float) -> None:
        """A provider's own time to first token (from its request to its first text)."""
        window = self._ttft.get(name)
        if window is None:
            window = self._ttft[name] = deque(maxlen=WINDOW)
        window.append(seconds)

    def p95(self, name: str) -> float | None:
        """The provider's p95 time to first token over its recent replies, if measured."""
        window = self._ttft.get(name)
        if not window:
            return None
        ordered = sorted(window)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def delay(self, name: str) -> float:
        """Seconds to wait for ``name``'s first token before hedging."""
        p95 = self.p95(name)
        return max(self._min_delay, self._factor * p95) if p95 is not None else self._min_delay

    def delay_for(self, provider: Provider) -> float | None:
        """When to hedge ``provider``; None when its own first-token timeout comes first."""
        delay = self.delay(provider.name)
        bound = getattr(provider, "first_token_timeout", None)
        return None if bound is not None and delay >= bound else delay

    def target(self, pool: ProviderPool, order: list[str], tried: set[str]) -> str | None:
        """The next usable provider not asked yet; the embedded model only if allowed."""
        for name in order:
            st = pool[name]
            if name in tried or not st.usable:
                continue
            if st.provider.kind == "embedded" and not self.to_embedded:
                continue
            return name
        return None

    def request_started(self) -> None:
        self.requests += 1
        self._recent.append(False)

    def take(self) -> bool:
        """Spend one hedge from the budget of the last 100 requests; False when spent.

        Requests overlap, so the hedge is booked on the latest request not yet hedged;
        the count over the window is what the bound is about. One hedge per request is
        the walker's rule.
        """
        if sum(self._recent) + 1 > self._max_per_window:
            return False
        for i in range(len(self._recent) - 1, -1, -1):
            if not self._recent[i]:
                self._recent[i] = True
                self.hedged += 1
                return True
        return False



@dataclass(eq=False, slots=True)
class Attempt:
    """One provider asked for this request, until its first chunk (``task``) is in."""

    name: str
    request: ChatRequest
    chunks: AsyncIterator[ChatChunk]
    started: float
    task: asyncio.Task[ChatChunk]

    async def cancel(self) -> None:
        """Stop waiting and close the upstream connection (the server stops generating)."""
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def first_token(
    first: Attempt,
    *,
    delay: float | None,
    hedge: Callable[[], Attempt | None],
    failed: Callable[[Attempt, BaseException], None],
) -> Attempt | None:
    """The attempt that produced a first chunk, or None when every attempt failed.

    ``delay`` (None: no hedging) is how long ``first`` may stay silent before ``hedge()``
    is asked for a second attempt (it returns None when no provider or no budget is left).
    ``failed`` hears about each ProviderError and RequestError; anything but a
    ProviderError (the caller's bad request, cancellation, a DEMI bug) then cancels every
    attempt and propagates.
    """
    pending: list[Attempt] = [first]
    waited = False
    try:
        while pending:
            timeout = delay if (delay is not None and not waited) else None
            done, _ = await asyncio.wait([a.task for a in pending], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                waited = True
                second = hedge()
                if second is not None:
                    pending.append(second)
                continue
            finished = [a for a in pending if a.task in done]
            # A first chunk beats a failure finishing at the same moment.
            finished.sort(key=lambda a: a.task.exception() is not None)
            for att in finished:
                pending.remove(att)
                exc = att.task.exception()
                if exc is None:
                    for loser in pending:
                        await loser.cancel()
                    pending.clear()
                    return att
                await att.cancel()  # the task is done: this only releases the connection
                if isinstance(exc, (ProviderError, RequestError)):
                    failed(att, exc)
                if not isinstance(exc, ProviderError | CannotExpress):
                    raise exc  # CannotExpress: that provider was skipped, the walk goes on
        return None
    except BaseException:
        for att in pending:
            await att.cancel()
        raise


async def first_chunk(name: str, chunks: AsyncIterator[ChatChunk]) -> ChatChunk:
    """Read until the first text or the end; nothing reaches the caller before this.

    A continuation whose first chunk is the final one is fine: the cut came right at the
    end of the answer.
    """
    while True:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            raise ProviderError(name, "the reply ended before any text") from None
        if chunk.text or chunk.done:
            return chunk


async def aclose_chunks(chunks: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
