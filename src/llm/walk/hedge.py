"""Hedged first token: when a provider is slow to start, ask the next one too.

A hung server costs every request its whole first-token timeout before failover. With
``llm.hedge.enabled``, once a provider has produced nothing for max(``min_delay``,
``delay_factor`` × its own p95 time to first token), the walker sends the same request to
the next usable provider as well; the first of the two to produce text wins, and the other
is cancelled (its connection is closed, so the server stops generating).

A provider that was still silent when the hedge won has its circuit opened (the walker
records a first-token timeout for it): a hung server must cost one hedge delay, not ten
hedges and then a full timeout. A provider that *failed* or *refused* during the race is
recorded as such, and the race goes on: a hedge target's 400 never beats a primary that is
about to answer.

Bounds: at most ``max_percent`` of the last 100 requests hedge (a healthy-but-slow primary
must not double the load on the fallback), and the embedded model is never a hedge target
unless ``llm.hedge.embedded`` says so (it shares this machine's CPU with DEMI).

The race (:func:`race`) is structured concurrency: both attempts wait in one
``asyncio.TaskGroup``; the loser's task is cancelled and awaited before the race returns,
and a cancellation from outside (the client went away) reaches every child.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...core.config import HedgeConfig
from ..providers.base import Provider
from ..state.registry import ProviderRegistry
from .attempt import Attempt

WINDOW = 100
"""Requests (and first-token samples per provider) the bounds look back over."""


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When to hedge and whom to ask: a value built once from the configuration."""

    enabled: bool
    to_embedded: bool
    delay_factor: float
    min_delay: float
    max_percent: float

    @classmethod
    def from_config(cls, config: HedgeConfig) -> HedgePolicy:
        return cls(enabled=config.enabled, to_embedded=config.embedded,
                   delay_factor=config.delay_factor, min_delay=config.min_delay,
                   max_percent=config.max_percent)

    def delay(self, p95: float | None) -> float:
        """Seconds to wait for a first token before hedging, given the provider's p95."""
        return self.min_delay if p95 is None else max(self.min_delay, self.delay_factor * p95)

    def target(self, registry: ProviderRegistry, order: list[str], tried: set[str]) -> str | None:
        """The next usable provider not asked yet; the embedded model only if allowed."""
        for name in order:
            st = registry[name]
            if name in tried or not st.usable:
                continue
            if st.provider.kind == "embedded" and not self.to_embedded:
                continue
            return name
        return None


class HedgeLedger:
    """What hedging has done: first-token samples per provider, the hedge budget of the
    last 100 requests, and the counters ``/status`` and ``/metrics`` show."""

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self._max_per_window = policy.max_percent * WINDOW / 100
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
        return self.policy.delay(self.p95(name))

    def delay_for(self, provider: Provider) -> float | None:
        """When to hedge ``provider``; None when its own first-token timeout comes first."""
        delay = self.delay(provider.name)
        bound = getattr(provider, "first_token_timeout", None)
        return None if bound is not None and delay >= bound else delay

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


async def race(
    first: Attempt[Any],
    *,
    delay: float | None,
    hedge: Callable[[], Awaitable[Attempt[Any] | None]],
    settled: Callable[[Attempt[Any]], None],
) -> Attempt[Any] | None:
    """The attempt that produced a first item, or None when every attempt settled without.

    ``delay`` (None: no hedging) is how long ``first`` may stay silent before ``hedge()`` is
    asked, once, for a second attempt (None: no provider or no budget left). ``settled``
    hears about each attempt that ended without an answer (failed, refused, skipped); the
    race goes on with the other. The caller owns the attempts (their ``async with``): it
    closes the loser's upstream after this returns, once the loser's task has ended.
    """
    try:
        async with asyncio.TaskGroup() as group:
            running = {group.create_task(first.wait()): first}
            waiting_for_hedge = delay is not None
            while running:
                done, _ = await asyncio.wait(
                    running, timeout=delay if waiting_for_hedge else None,
                    return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    waiting_for_hedge = False
                    second = await hedge()
                    if second is not None:
                        running[group.create_task(second.wait())] = second
                    continue
                # An answer beats a failure finishing at the same moment.
                for attempt in sorted((running.pop(t) for t in done),
                                      key=lambda a: not a.answered):
                    if attempt.answered:
                        for loser in running:
                            loser.cancel()  # awaited by the task group on the way out
                        return attempt
                    settled(attempt)
    except BaseExceptionGroup as group_error:
        # The task group wraps what ended it (the caller's mistake that ``settled`` raised,
        # a DEMI bug in an attempt); callers catch DEMI's errors by class, so the first one
        # goes on as itself, its traceback intact.
        raise _first_error(group_error) from None
    return None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
