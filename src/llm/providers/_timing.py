"""Time bounds shared by the streaming providers.

A reply has two bounds: the wait for the first token (``timeout`` in the guide's config;
a cold model load is slow, not broken) and the gap between two chunks once text flows
(``read_idle_timeout``).

Why not ``asyncio.timeout`` around each read: a reply has dozens of chunks, and a timer
created and cancelled per chunk was the largest single CPU cost in DEMI's hot path. Here
one watchdog timer per reply is re-armed lazily: each read only stores a deadline, and the
timer, when it fires, either finds the deadline moved (and sleeps again) or cancels the
read. It cancels only while a read is in progress, never while the consumer holds the
stream, so a slow consumer is never mistaken for a silent server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class ReplyClock:
    """Tracks which bound applies to the next read of one reply, and enforces it."""

    __slots__ = (
        "_expired", "_handle", "_in_read", "_loop", "_task", "deadline", "first_token",
        "idle", "started",
    )

    def __init__(self, first_token: float, idle: float) -> None:
        self.first_token = first_token
        self.idle = idle
        self.started = False
        self.deadline = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._in_read = False
        self._expired = False

    @property
    def bound(self) -> float:
        return self.idle if self.started else self.first_token

    def describe(self) -> str:
        """Log-safe reason for a timeout at the current point of the reply."""
        if self.started:
            return f"no data for {self.idle:g}s in the middle of the reply"
        return f"no first token within {self.first_token:g}s"

    async def read(self, aw: Awaitable[T]) -> T:
        """Await one network read within the bound that applies now (TimeoutError if not)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.bound
        self._task = asyncio.current_task()
        handle = self._handle
        if handle is None or handle.when() > self.deadline:
            # First read, or the bound shrank (first token → idle): arm for this deadline.
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(self.deadline, self._check)
        self._in_read = True
        try:
            return await aw
        except asyncio.CancelledError:
            if self._expired and self._task is not None:
                self._expired = False
                self._task.uncancel()
                raise TimeoutError(self.describe()) from None
            raise
        finally:
            self._in_read = False

    def _check(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if self._in_read and now >= self.deadline and self._task is not None:
            self._handle = None
            self._expired = True
            self._task.cancel()
            return
        # The deadline moved (a chunk arrived) or the consumer holds the stream: look again
        # at the current deadline, or one bound from now if the consumer is the slow one.
        when = self.deadline if self.deadline > now else now + self.bound
        self._handle = self._loop.call_at(when, self._check)

    def close(self) -> None:
        """Stop the watchdog (call when the reply ends, however it ends)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
