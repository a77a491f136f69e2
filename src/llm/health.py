"""Health checks: cached, de-duplicated, and run in the background independently of traffic.

The guide's three promises live here: results are cached for ``health_check_interval``
(60 s by default), a check runs before messages while DEMI is in fallback (the router asks
for it through :meth:`HealthMonitor.maybe_probe`), and a background task keeps checking
whether or not messages arrive.

Two rules keep checks cheap: at most one probe per provider is in flight at any time (a
second caller joins the first), and a message waits for a probe only briefly
(``health_check_wait``), so a black-holed provider never adds its timeout to every message.
What a report means for traffic is decided by the ``on_report`` callback (the breaker), not
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .breaker import CircuitBreaker
from .clock import Clock
from .provider import Provider
from .stats import ProviderStats
from .types import HealthReport


@dataclass(slots=True, eq=False)
class ProviderState:
    """Everything DEMI tracks about one provider."""

    provider: Provider
    breaker: CircuitBreaker
    stats: ProviderStats = field(default_factory=ProviderStats)
    report: HealthReport | None = None
    checked_at: float | None = None
    checked_wall: float | None = None
    probe_started: float | None = None
    probe_task: asyncio.Task[HealthReport] | None = None
    last_error: str | None = None

    @property
    def usable(self) -> bool:
        """Traffic may go here now: breaker closed and not known to be still loading."""
        loading = self.report is not None and self.report.loading
        return self.breaker.allows_traffic and not loading


ReportHandler = Callable[[ProviderState, HealthReport], None]


class HealthMonitor:
    def __init__(
        self,
        states: dict[str, ProviderState],
        clock: Clock,
        *,
        interval: Callable[[], float],
        on_report: ReportHandler,
        logger: logging.Logger,
    ) -> None:
        self._states = states
        self._clock = clock
        self._interval = interval
        self._on_report = on_report
        self._log = logger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- probing -----------------------------------------------------------------------
    def probe(self, name: str) -> asyncio.Task[HealthReport]:
        """Start a probe of ``name``, or return the one already in flight."""
        st = self._states[name]
        if st.probe_task is not None and not st.probe_task.done():
            return st.probe_task
        st.probe_started = self._clock.now()
        st.probe_task = asyncio.get_running_loop().create_task(
            self._run_probe(st), name=f"demi-health-{name}"
        )
        return st.probe_task

    async def _run_probe(self, st: ProviderState) -> HealthReport:
        try:
            report = await st.provider.health()
        except Exception as exc:
            # health() never raises by contract, so this is a DEMI bug, not the provider's
            # failure: log it with its traceback and leave the provider's state alone.
            self._log.error("Unexpected %s in the %s health check (a DEMI bug)",
                            type(exc).__name__, st.provider.name, exc_info=exc)
            st.checked_at = self._clock.now()  # retried after the interval, not in a loop
            return st.report or HealthReport(
                healthy=False, latency=0.0, error=f"internal error ({type(exc).__name__})"
            )
        st.report = report
        st.checked_at = self._clock.now()
        st.checked_wall = self._clock.wall()
        st.stats.record_probe(report.latency)
        if not report.healthy:
            st.last_error = report.error
        self._log.debug(
            "Health check %s: %s (%.1f ms)%s", st.provider.name,
            "healthy" if report.healthy else "unhealthy", report.latency * 1000,
            f": {report.error}" if report.error else "",
        )
        self._on_report(st, report)
        return report

    async def check(self, name: str, *, max_age: float | None = None) -> HealthReport:
        """A report no older than ``max_age`` (default: the cache interval); probes if stale."""
        st = self._states[name]
        age_limit = self._interval() if max_age is None else max_age
        if (
            st.report is not None and st.checked_at is not None
            and self._clock.now() - st.checked_at < age_limit
        ):
            return st.report
        return await self.probe(name)

    async def check_all(self, *, max_age: float | None = None) -> dict[str, HealthReport]:
        names = list(self._states)
        reports = await asyncio.gather(*(self.check(n, max_age=max_age) for n in names))
        return dict(zip(names, reports, strict=True))

    def due_at(self, st: ProviderState) -> float:
        """When the next background probe of this provider is due."""
        if st.checked_at is None:
            return float("-inf")
        if st.report is not None and st.report.loading:
            # Still loading a model: look again soon, so it serves as soon as it is ready.
            return st.checked_at + st.breaker.probe_interval
        if st.breaker.allows_traffic:
            return st.checked_at + self._interval()
        last = max(st.checked_at, st.probe_started or st.checked_at)
        return st.breaker.next_probe_at(last)

    async def maybe_probe(self, name: str, wait: float) -> None:
        """Probe ``name`` if due, and wait for the probe at most ``wait`` seconds from its start.

        Used per message while in fallback. A probe started long ago (a hung server) costs
        the message nothing; a quick one (a recovered server) is seen by this very message.
        """
        st = self._states[name]
        in_flight = st.probe_task is not None and not st.probe_task.done()
        if not in_flight and self._clock.now() < self.due_at(st):
            return
        task = self.probe(name)
        assert st.probe_started is not None
        remaining = st.probe_started + wait - self._clock.now()
        if remaining <= 0 or task.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), remaining)

    # -- background loop ---------------------------------------------------------------
    def wake(self) -> None:
        """Re-plan the background loop now (a breaker changed state)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="demi-health-monitor"
            )

    async def _loop(self) -> None:
        while True:
            now = self._clock.now()
            for name, st in self._states.items():
                if self.due_at(st) <= now:
                    self.probe(name)
            pending = [
                st.probe_task for st in self._states.values()
                if st.probe_task is not None and not st.probe_task.done()
            ]
            idle = [
                st for st in self._states.values()
                if st.probe_task is None or st.probe_task.done()
            ]
            # Providers with a probe in flight are re-planned when it finishes, not polled.
            next_due = min((self.due_at(st) for st in idle), default=now + self._interval())
            delay = max(0.001, next_due - self._clock.now())
            self._wake.clear()
            sleeper = asyncio.ensure_future(self._clock.sleep(delay))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                # A probe finishing also re-plans: its provider's next due time moved.
                await asyncio.wait(
                    [sleeper, waker, *pending], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                sleeper.cancel()
                waker.cancel()

    async def stop(self) -> None:
        tasks: list[asyncio.Task[Any]] = [self._task] if self._task is not None else []
        tasks += [
            st.probe_task for st in self._states.values()
            if st.probe_task is not None and not st.probe_task.done()
        ]
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = None
