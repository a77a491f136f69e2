"""Warm standby: the provider a failover would go to keeps its model loaded.

Ollama unloads an idle model after five minutes and LM Studio after its idle TTL; the first
request after that waits for a cold load (seconds to minutes), which is exactly when a
failover needs that provider most. With ``llm.warm_standby.enabled`` a background task
asks the standby (the first usable provider after the active one, in the routing order)
every ``interval`` seconds to keep its model loaded for ``keep_for`` seconds: Ollama gets
an empty chat with ``keep_alive`` (its preload), LM Studio a one-token request with its
``ttl`` (see each provider's ``warm``). The embedded model needs nothing: it stays loaded
while its engine runs.

Off by default: a second loaded model costs its memory (VRAM on a laptop) all the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..clock import Clock
from .registry import ProviderPool


class WarmStandby:
    """The background task; :meth:`tick` is one round (tests call it directly)."""

    def __init__(
        self,
        pool: ProviderPool,
        order: Callable[[], list[str]],
        clock: Clock,
        *,
        interval: float,
        keep_for: float,
        logger: logging.Logger,
    ) -> None:
        self._pool = pool
        self._order = order
        self._clock = clock
        self._interval = interval
        self._keep_for = keep_for
        self._logger = logger
        self._task: asyncio.Task[None] | None = None
        self.warmed: dict[str, int] = {}
        """Successful warm requests per provider (``/status``)."""

    def standby(self) -> str | None:
        """The provider after the active one: where the next failover goes."""
        usable = [n for n in self._order() if self._pool[n].usable]
        return usable[1] if len(usable) > 1 else None

    async def tick(self) -> str | None:
        """Warm the standby once; its name when the server was asked successfully."""
        name = self.standby()
        if name is None:
            return None
        if not await self._pool[name].provider.warm(self._keep_for):
            self._logger.debug("Warm standby: %s did not answer", self._pool.display(name))
            return None
        self.warmed[name] = self.warmed.get(name, 0) + 1
        return name

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await self.tick()
            await self._clock.sleep(self._interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
