"""An injectable clock, so tests control time instead of sleeping through intervals.

Health intervals, breaker waits and probe backoff read time only through a ``Clock``.
Network time bounds (connect, first token) use the event loop's real timers: they guard
real sockets, and tests exercise them with short configured values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wall(self) -> float:
        """Unix time, for showing people when something happened."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock tests move by hand; ``sleep`` waits until ``advance`` passes its deadline."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return 1_700_000_000.0 + self._now

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        """Register the deadline now (not when the awaiting task first runs), then wait.

        A plain ``async def`` would anchor the deadline only once the task starts, so an
        ``advance()`` in between would be lost and the sleeper would oversleep.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            fut.set_result(None)
        else:
            self._sleepers.append((self._now + seconds, fut))
        return fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self._now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self._now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
