"""Warm standby: the provider a failover would go to keeps its model loaded.

Ollama unloads an idle model after five minutes and LM Studio after its idle TTL; the first
request after that waits for a cold load (seconds to minutes), which is exactly when a
failover needs that provider most. With ``llm.warm_standby.enabled`` a background task
asks the standby (the first usable provider after the active one, in the strategy's
ranking) every ``interval`` seconds to keep its model loaded for ``keep_for`` seconds:
Ollama gets an empty chat with ``keep_alive`` (its preload), LM Studio a one-token request
with its ``ttl`` (see each provider's ``warm``). The embedded model needs nothing: it stays
loaded while its engine runs.

The standby is read from the strategy's pure ranking, never from the order a request gets:
looking for it (as ``/status`` does on every poll) must not advance a rotation or a canary.

Off by default: a second loaded model costs its memory (VRAM on a laptop) all the time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...core.tasks import cancel_and_wait, keep_running
from ..clock import Clock
from .registry import ProviderRegistry


class WarmStandby:
    """The background task; :meth:`tick` is one round (tests call it directly)."""

    def __init__(
        self,
        registry: ProviderRegistry,
        ranking: Callable[[], list[str]],
        clock: Clock,
        *,
        interval: float,
        keep_for: float,
        logger: logging.Logger,
    ) -> None:
        self._registry = registry
        self._ranking = ranking
        self._clock = clock
        self._interval = interval
        self._keep_for = keep_for
        self._logger = logger
        self._task: asyncio.Task[None] | None = None
        self.warmed: dict[str, int] = {}
        """Successful warm requests per provider (``/status``)."""

    def standby(self) -> str | None:
        """The provider after the active one: where the next failover goes (no side effects)."""
        usable = [n for n in self._ranking() if self._registry[n].usable]
        return usable[1] if len(usable) > 1 else None

    async def tick(self) -> str | None:
        """Warm the standby once; its name when the server was asked successfully."""
        name = self.standby()
        if name is None:
            return None
        if not await self._registry[name].provider.warm(self._keep_for):
            self._logger.debug("Warm standby: %s did not answer",
                               self._registry.display(name))
            return None
        self.warmed[name] = self.warmed.get(name, 0) + 1
        return name

    async def _round(self) -> float:
        await self.tick()
        return self._interval

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                keep_running(self._round, self._logger, "warm standby",
                             sleep=self._clock.sleep, retry_after=self._interval),
                name="demi-warm-standby",
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        died = await cancel_and_wait(task)
        if died is not None:  # keep_running logs bugs and goes on: this one escaped it
            self._logger.error("Warm standby had died of %s (a DEMI bug)",
                               type(died).__name__, exc_info=died)
