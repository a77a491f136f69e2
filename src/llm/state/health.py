"""Health checks: cached, de-duplicated, and run in the background independently of traffic.

The guide's three promises live here: results are cached for ``health_check_interval``
(60 s by default), a check runs before messages while DEMI is in fallback (the router asks
for it through :meth:`HealthMonitor.maybe_probe`), and a background task keeps checking
whether or not messages arrive.

Three rules keep checks cheap and harmless:

* **Passive first.** A provider that is serving a request, or whose last reply finished
  well less than ``health_check_interval`` ago, is healthy by that evidence: its probe is
  skipped, and it is due again only an interval after it went idle. Some servers abort the
  reply they are generating when another request arrives (llama.cpp's server does by
  default), so probing a busy one would cut its replies; others would just spend a slot.
  Probes are for idle providers and for failing ones: the breaker's open and half-open
  probing is unchanged (Envoy's outlier detection works the same way).
* At most one probe per provider is in flight at any time (a second caller joins the first).
* A message waits for a probe only briefly (``health_check_wait``), so a black-holed
  provider never adds its timeout to every message.
What a report means for traffic is decided by the registry that owns the provider's state
(:meth:`ProviderRegistry.record_report`), not here; the monitor owns only its probe tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ...core.tasks import cancel_and_wait, keep_running
from ..clock import Clock
from ..types import HealthReport
from .registry import ProviderRegistry, ProviderState


class HealthMonitor:
    """Runs the probes; the results go to the registry, which owns every provider's state."""

    def __init__(
        self,
        registry: ProviderRegistry,
        clock: Clock,
        *,
        interval: Callable[[], float],
        logger: logging.Logger,
        passive: bool = True,
    ) -> None:
        self._registry = registry
        self._passive = passive
        self._clock = clock
        self._interval = interval
        self._log = logger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probes: dict[str, asyncio.Task[HealthReport]] = {}
        self._probe_started: dict[str, float] = {}

    # -- probing -----------------------------------------------------------------------
    def _in_flight(self, name: str) -> asyncio.Task[HealthReport] | None:
        task = self._probes.get(name)
        return task if task is not None and not task.done() else None

    def probe(self, name: str) -> asyncio.Task[HealthReport]:
        """Start a probe of ``name``, or return the one already in flight."""
        task = self._in_flight(name)
        if task is not None:
            return task
        self._probe_started[name] = self._clock.now()
        task = self._probes[name] = asyncio.get_running_loop().create_task(
            self._run_probe(name), name=f"demi-health-{name}"
        )
        return task

    async def _run_probe(self, name: str) -> HealthReport:
        st = self._registry[name]
        try:
            report = await st.provider.health()
        except Exception as exc:
            # health() never raises by contract, so this is a DEMI bug, not the provider's
            # failure: log it with its traceback and leave the provider's state alone.
            self._log.error("Unexpected %s in the %s health check (a DEMI bug)",
                            type(exc).__name__, name, exc_info=exc)
            self._registry.checked_without_result(name)  # retried after the interval
            return st.report or HealthReport(
                healthy=False, latency=0.0, error=f"internal error ({type(exc).__name__})"
            )
        self._log.debug(
            "Health check %s: %s (%.1f ms)%s", name,
            "healthy" if report.healthy else "unhealthy", report.latency * 1000,
            f": {report.error}" if report.error else "",
        )
        self._registry.record_report(name, report)
        return report

    async def check(self, name: str, *, max_age: float | None = None) -> HealthReport:
        """A report no older than ``max_age`` (default: the cache interval); probes if stale.

        A provider serving a request right now is not probed even then: its traffic says
        more than a probe would, and a probe could cut the reply it is generating.
        """
        st = self._registry[name]
        age_limit = self._interval() if max_age is None else max_age
        if st.report is not None and st.checked_at is not None and (
            self._clock.now() - st.checked_at < age_limit
            or (self._passive and st.serving and st.breaker.allows_traffic)
        ):
            return st.report
        return await self.probe(name)

    async def check_all(self, *, max_age: float | None = None) -> dict[str, HealthReport]:
        names = list(self._registry)
        reports = await asyncio.gather(*(self.check(n, max_age=max_age) for n in names))
        return dict(zip(names, reports, strict=True))

    def due_at(self, name: str) -> float:
        """When the next background probe of this provider is due."""
        st: ProviderState = self._registry[name]
        if st.checked_at is None:
            return float("-inf")
        if st.report is not None and st.report.loading:
            # Still loading a model: look again soon, so it serves as soon as it is ready.
            return st.checked_at + st.breaker.probe_interval
        if st.breaker.allows_traffic:
            if not self._passive:
                return st.checked_at + self._interval()
            if st.serving:
                return float("inf")  # its traffic is the check; due once idle (idle())
            last = st.checked_at if st.succeeded_at is None else max(
                st.checked_at, st.succeeded_at)
            return last + self._interval()
        last = max(st.checked_at, self._probe_started.get(name, st.checked_at))
        return st.breaker.next_probe_at(last)

    async def maybe_probe(self, name: str, wait: float) -> None:
        """Probe ``name`` if due, and wait for the probe at most ``wait`` seconds from its start.

        Used per message while in fallback. A probe started long ago (a hung server) costs
        the message nothing; a quick one (a recovered server) is seen by this very message.
        """
        if self._in_flight(name) is None and self._clock.now() < self.due_at(name):
            return
        task = self.probe(name)
        remaining = self._probe_started[name] + wait - self._clock.now()
        if remaining <= 0 or task.done():
            return
        await asyncio.wait([task], timeout=remaining)  # the probe goes on if this gives up

    async def forget(self, name: str) -> None:
        """``name`` leaves the chain: stop its probe in flight and wait for it to end."""
        task = self._probes.pop(name, None)
        self._probe_started.pop(name, None)
        died = await cancel_and_wait(task)
        if died is not None:
            self._log.error("The %s health check had died of %s (a DEMI bug)", name,
                            type(died).__name__, exc_info=died)

    # -- background loop ---------------------------------------------------------------
    def idle(self, name: str) -> None:
        """``name`` finished its last request in flight: re-plan if its probe is now due."""
        if self._task is not None and self.due_at(name) <= self._clock.now():
            self._wake.set()

    def wake(self) -> None:
        """Re-plan the background loop now (a breaker changed state)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                keep_running(self._plan, self._log, "the background health checks",
                             sleep=self._until_due),
                name="demi-health-monitor",
            )

    async def _plan(self) -> float:
        """Start the probes that are due; the seconds until the next one is (at most)."""
        now = self._clock.now()
        for name in self._registry:
            if self.due_at(name) <= now:
                self.probe(name)
        idle = [name for name in self._registry if self._in_flight(name) is None]
        # Providers with a probe in flight are re-planned when it finishes, not polled.
        next_due = min((self.due_at(n) for n in idle), default=now + self._interval())
        # A serving provider is due at infinity: idle() wakes the loop when it is done.
        return max(0.001, min(next_due - self._clock.now(), self._interval()))

    async def _until_due(self, delay: float) -> None:
        """Sleep ``delay`` on the clock, or less: a breaker move (:meth:`wake`) or a probe
        finishing re-plans at once, since its provider's next due time moved."""
        pending = [t for t in map(self._in_flight, self._registry) if t is not None]
        self._wake.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([sleeper, waker, *pending], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def stop(self) -> None:
        """Stop the loop and every probe in flight, and wait for them to end."""
        tasks: list[asyncio.Task[Any]] = [self._task] if self._task is not None else []
        tasks += [t for t in map(self._in_flight, self._registry) if t is not None]
        self._task = None
        for task in tasks:
            died = await cancel_and_wait(task)
            if died is not None:
                self._log.error("The health check task had died of %s (a DEMI bug)",
                                type(died).__name__, exc_info=died)
