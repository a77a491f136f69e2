"""Time bounds shared by the streaming providers.

A reply has two bounds: the wait for the first token (``timeout`` in the guide's config;
a cold model load is slow, not broken) and the gap between two chunks once text flows
(``read_idle_timeout``). Each ``await`` on the network is wrapped on its own, never a
timeout held across a ``yield``: a timer that fires while the consumer holds the generator
would cancel the consumer's code instead of the read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class ReplyClock:
    """Tracks which bound applies to the next read of one reply."""

    __slots__ = ("first_token", "idle", "started")

    def __init__(self, first_token: float, idle: float) -> None:
        self.first_token = first_token
        self.idle = idle
        self.started = False

    @property
    def bound(self) -> float:
        return self.idle if self.started else self.first_token

    def describe(self) -> str:
        """Log-safe reason for a timeout at the current point of the reply."""
        if self.started:
            return f"no data for {self.idle:g}s in the middle of the reply"
        return f"no first token within {self.first_token:g}s"

    async def read(self, aw: Awaitable[T]) -> T:
        """Await one network read within the bound that applies now."""
        async with asyncio.timeout(self.bound):
            return await aw
