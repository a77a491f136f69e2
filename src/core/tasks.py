"""Background tasks with an owner: stopping one never swallows the owner's own cancellation.

Every long-lived task DEMI starts (the health monitor's loop, warm standby, the engine
supervisor, the server's start-up) belongs to an object whose ``stop``/``close`` cancels
it and waits for it to finish. The classic way to write that,
``task.cancel(); with suppress(CancelledError): await task``, also swallows a cancellation
aimed at the *owner* while it waits, so a shutdown that is itself being cancelled carries
on as if nothing happened. :func:`cancel_and_wait` waits with ``asyncio.wait``, which never
raises the task's outcome, so only the owner's own cancellation can propagate from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> BaseException | None:
    """Cancel ``task`` and wait until it has finished; what it died of, if anything.

    The task's own ``CancelledError`` (the one asked for) is not raised here, nor is an
    exception it died of (it is returned, for the owner to log); a cancellation of the
    caller while it waits propagates as usual.
    """
    if task is None:
        return None
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if task.cancelled():
        return None
    return task.exception()


async def keep_running(
    step: Callable[[], Awaitable[float]], logger: logging.Logger, what: str,
    *, sleep: Callable[[float], Awaitable[None]], retry_after: float = 1.0,
) -> None:
    """Run ``step`` forever, sleeping the seconds it returns; a bug in it is logged with its
    traceback and the loop goes on after ``retry_after`` seconds instead of dying silently.

    Cancellation ends the loop (it is how the owner stops it).
    """
    while True:
        try:
            delay = await step()
        except Exception as exc:  # a DEMI bug: keep the background job alive, say so loudly
            logger.error("Unexpected %s in %s (a DEMI bug); carrying on", type(exc).__name__,
                         what, exc_info=exc)
            delay = retry_after
        await sleep(delay)
