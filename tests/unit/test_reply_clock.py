"""The per-reply watchdog: first-token and idle bounds, never blaming a slow consumer."""

from __future__ import annotations

import asyncio

import pytest

from src.llm.providers._timing import ReplyClock


async def test_read_past_first_token_bound_times_out() -> None:
    """A read that outlasts the first-token bound raises TimeoutError naming that bound."""
    clock = ReplyClock(first_token=0.05, idle=10)
    never = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError, match=r"no first token within 0\.05s"):
        await clock.read(never)
    clock.close()
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_idle_bound_applies_once_text_started() -> None:
    """After the first text, the idle bound (not the first-token one) applies."""
    clock = ReplyClock(first_token=10, idle=0.05)
    assert await clock.read(asyncio.sleep(0, "a")) == "a"
    clock.started = True
    with pytest.raises(TimeoutError, match=r"no data for 0\.05s"):
        await clock.read(asyncio.get_running_loop().create_future())
    clock.close()


async def test_slow_consumer_is_not_a_timeout() -> None:
    """Time spent outside read() (the consumer busy) never cancels anything."""
    clock = ReplyClock(first_token=0.02, idle=0.02)
    for _ in range(3):
        assert await clock.read(asyncio.sleep(0, 1)) == 1
        await asyncio.sleep(0.06)  # longer than the bound, but not inside a read
    clock.close()


async def test_fast_reads_keep_rearming() -> None:
    """Many quick reads in a row complete; the watchdog follows the moving deadline."""
    clock = ReplyClock(first_token=0.05, idle=0.05)
    for i in range(200):
        assert await clock.read(asyncio.sleep(0, i)) == i
    clock.close()


async def test_outside_cancellation_is_not_turned_into_timeout() -> None:
    """A cancel from elsewhere (client went away) stays a CancelledError."""
    clock = ReplyClock(first_token=10, idle=10)
    task = asyncio.create_task(clock.read(asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.close()
