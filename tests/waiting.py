"""Polling with a deadline: how tests wait for a condition without fixed sleeps."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def wait_until(
    cond: Callable[[], bool | Awaitable[bool]],
    what: str = "condition",
    within: float = 10.0,
    poll: float = 0.02,
) -> None:
    """Poll ``cond`` until it is true; fail after ``within`` seconds (a hang guard)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(poll)
