"""Polling with a deadline: how tests wait for a condition without fixed sleeps.

The one polling helper of the test suite (async and sync flavours).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    cond: Callable[[], bool | Awaitable[bool]],
    what: str = "condition",
    within: float = 20.0,
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


def wait_until_sync(
    cond: Callable[[], bool],
    what: str = "condition",
    within: float = 20.0,
    poll: float = 0.05,
) -> None:
    """:func:`wait_until` for code outside an event loop (subprocess start-up)."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(poll)
