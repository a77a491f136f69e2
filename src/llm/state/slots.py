"""Slots: how many requests each provider takes at once, and DEMI's queue when all are full.

A local server answers only a few requests at once (llama.cpp's server has a fixed number
of slots, Ollama ``OLLAMA_NUM_PARALLEL``, the embedded engine one) and queues the rest
itself, where nobody can see or bound the wait. With ``max_concurrency`` DEMI sends a
provider at most that many requests at once (the registry counts them: ``serving``); a
provider at its cap is passed over for the next request, which goes to one with a free slot
(a *spillover*: not a failure, not a fallback).

When every usable provider is full, the request waits here, first come first served, for
the first slot that frees: at most ``llm.queue.max_wait`` seconds and at most
``llm.queue.max_waiting`` requests deep. Past either bound it is refused at once with
:class:`~..errors.Overloaded`, whose ``retry_after`` comes from the measured service time
of the work ahead, not a constant. A waiter that is cancelled (its client went away)
leaves the queue and never takes a slot.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from ..errors import Overloaded

DEFAULT_SERVICE_TIME = 2.0
"""Seconds a request is assumed to take before any was measured."""


class SlotQueue:
    """The requests waiting for a free slot, in arrival order."""

    def __init__(
        self, *, max_wait: float, max_waiting: int,
        retry_after: Callable[[int], float],
    ) -> None:
        self.max_wait = max_wait
        self.max_waiting = max_waiting
        self._retry_after = retry_after
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._woken = 0
        """Waiters handed a slot that have not run yet: the slot is theirs, not a newcomer's."""
        self.refused = 0
        """Requests refused because the queue was full or their wait ran out."""
        self._owed = 0
        """Refused callers that will come back: each one counts as work ahead of the next
        refusal, so a burst of them is told to return one after another, not all at once.
        One is forgiven per slot that frees with nobody waiting."""

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def __bool__(self) -> bool:
        """True while some request waits or was just woken: a newcomer then queues behind
        it (no barging)."""
        return bool(self._waiters) or self._woken > 0

    async def wait(self, *, first: bool = False) -> None:
        """Wait for a slot to free up; Overloaded past either bound.

        ``first``: a waiter that was woken but found its slot taken goes back to the front.
        """
        if len(self._waiters) >= self.max_waiting:
            self.refused += 1
            raise self._overloaded(f"{len(self._waiters)} requests are already waiting "
                                   f"(llm.queue.max_waiting = {self.max_waiting})")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(future)
        else:
            self._waiters.append(future)
        try:
            async with asyncio.timeout(self.max_wait):
                await future
            self._woken -= 1
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._woken -= 1
                self.slot_freed()  # woken, then its client left: the slot goes to the next
            raise
        except TimeoutError:
            if future.done() and not future.cancelled():
                self._woken -= 1
                self.slot_freed()  # woken as its time ran out: the slot goes to the next
            self.refused += 1
            raise self._overloaded(
                f"no slot freed within {self.max_wait:g}s (llm.queue.max_wait)") from None
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def slot_freed(self) -> None:
        """A provider finished a request: the first waiter still waiting goes next."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                self._woken += 1
                return
        self._owed = max(0, self._owed - 1)

    def _overloaded(self, why: str) -> Overloaded:
        waiting = len(self._waiters)
        seconds = self.retry_after(waiting + self._owed)
        self._owed += 1
        return Overloaded(f"Every provider is busy and {why}; retry in {seconds:g}s",
                          retry_after=seconds, waiting=waiting)

    def retry_after(self, waiting: int) -> float:
        return self._retry_after(waiting)


def retry_after(service_time: float | None, ahead: int, slots: int) -> float:
    """Whole seconds until a slot is likely free for a newcomer behind ``ahead`` requests,
    with ``slots`` requests served at once, each taking ``service_time`` seconds.

    >>> retry_after(3.0, ahead=4, slots=2)
    8.0
    """
    per = service_time if service_time and service_time > 0 else DEFAULT_SERVICE_TIME
    return float(max(1, math.ceil(per * (ahead + 1) / max(1, slots))))
