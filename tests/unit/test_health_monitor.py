"""The health monitor: caching, de-duplication, bounded waits, background cadence.

The provider is a scripted one whose health the test sets (pure scheduling logic; the
real providers are tested against real servers elsewhere).
"""

from __future__ import annotations

import asyncio
import logging

from src.llm.state.breaker import BreakerPolicy
from src.llm.state.health import HealthMonitor
from src.llm.state.registry import ProviderRegistry, ProviderState
from src.testing.scripted import ScriptedProvider
from tests.conftest import SteppingClock
from tests.waiting import wait_until

POLICY = BreakerPolicy(failure_threshold=1, recovery_successes=2, probe_interval=0.5,
                       backoff_max=30.0)


def setup(interval: float = 60.0) -> tuple[HealthMonitor, ScriptedProvider, ProviderState,
                                          SteppingClock]:
    clock = SteppingClock()
    provider = ScriptedProvider("p")
    registry = ProviderRegistry({"p": provider}, clock, POLICY, on_breaker=lambda *a: None,
                        on_change=lambda cause: None)
    registry.initial_check_done = True  # every unhealthy report counts as a failure
    monitor = HealthMonitor(registry, clock, interval=lambda: interval,
                            logger=logging.getLogger("test"))
    return monitor, provider, registry["p"], clock


async def test_results_are_cached_for_the_interval() -> None:
    """A second check within the interval reuses the first result; after it, probes again."""
    monitor, provider, _, clock = setup(interval=60)
    await monitor.check("p")
    await monitor.check("p")
    assert provider.counts.health_checks == 1
    clock.advance(61)
    await monitor.check("p")
    assert provider.counts.health_checks == 2


async def test_concurrent_checks_share_one_probe() -> None:
    """Many callers at once cause one probe, not one each."""
    monitor, provider, _, _ = setup()
    provider.health_gate = asyncio.Event()
    waiters = [asyncio.create_task(monitor.check("p")) for _ in range(10)]
    await asyncio.sleep(0)
    provider.health_gate.set()
    await asyncio.gather(*waiters)
    assert provider.counts.health_checks == 1


async def test_maybe_probe_never_waits_on_a_stuck_probe() -> None:
    """A message joins an in-flight probe only within its wait bound from the probe's start."""
    monitor, provider, state, clock = setup()
    state.breaker.force_open("down")
    provider.health_gate = asyncio.Event()  # the probe hangs until released
    first = asyncio.create_task(monitor.maybe_probe("p", wait=0.05))
    await asyncio.sleep(0)
    clock.advance(1.0)  # the probe has now been in flight longer than the wait bound
    await asyncio.wait_for(monitor.maybe_probe("p", wait=0.05), 5)  # returns without waiting
    assert provider.counts.health_checks == 1
    provider.health_gate.set()
    await first


async def test_probe_not_repeated_before_spacing() -> None:
    """While open, per-message probes respect the breaker's probe spacing."""
    monitor, provider, state, clock = setup()
    provider.set_health(False, "down")
    await monitor.check("p", max_age=0)
    assert not state.breaker.allows_traffic
    await monitor.maybe_probe("p", wait=0.1)
    assert provider.counts.health_checks == 1  # not due yet
    clock.advance(0.6)
    await monitor.maybe_probe("p", wait=0.1)
    assert provider.counts.health_checks == 2


async def test_background_loop_checks_without_traffic() -> None:
    """The background task probes on its own: immediately, then every interval."""
    monitor, provider, state, clock = setup(interval=60)
    monitor.start()
    try:
        await wait_until(lambda: state.checked_at is not None, "the first background probe")
        assert provider.counts.health_checks == 1
        provider.set_health(False, "down")
        await clock.step(60)
        await wait_until(lambda: not state.breaker.allows_traffic, "the second probe to fail")
        assert provider.counts.health_checks == 2
        provider.set_health(True)
        await clock.step(0.5)  # open: probed at probe_interval, not the full interval
        await wait_until(lambda: provider.counts.health_checks == 3,
                         "a probe at the probe interval")
    finally:
        await monitor.stop()


def served_setup(interval: float = 60.0) -> tuple[HealthMonitor, ScriptedProvider,
                                                  ProviderRegistry, SteppingClock]:
    """Like setup(), with the registry telling the monitor when a provider goes idle."""
    clock = SteppingClock()
    provider = ScriptedProvider("p")
    monitor: HealthMonitor | None = None

    def idle(name: str) -> None:
        assert monitor is not None
        monitor.idle(name)

    registry = ProviderRegistry({"p": provider}, clock, POLICY, on_breaker=lambda *a: None,
                                on_change=lambda cause: None, on_idle=idle)
    registry.initial_check_done = True
    monitor = HealthMonitor(registry, clock, interval=lambda: interval,
                            logger=logging.getLogger("test"))
    return monitor, provider, registry, clock


async def test_a_serving_provider_is_not_probed_until_idle() -> None:
    """Passive health: while a request is in flight the probe is skipped, however overdue;
    once the provider is idle the overdue probe runs at once."""
    monitor, provider, registry, clock = served_setup(interval=60)
    monitor.start()
    try:
        await wait_until(lambda: provider.counts.health_checks == 1, "the first probe")
        release = registry.serve("p")
        await clock.step(61)
        await clock.step(61)  # twice the interval: still serving, still no probe
        assert provider.counts.health_checks == 1
        assert monitor.due_at("p") == float("inf")
        await monitor.check("p", max_age=0)  # an explicit refresh leaves it alone too
        assert provider.counts.health_checks == 1
        release()
        await wait_until(lambda: provider.counts.health_checks == 2, "the probe once idle")
        release()  # idempotent: the count never goes below zero
        assert registry["p"].serving == 0
    finally:
        await monitor.stop()


async def test_a_finished_reply_postpones_the_probe() -> None:
    """A reply that finished well is evidence too: the next probe is an interval after it."""
    monitor, provider, registry, clock = served_setup(interval=60)
    await monitor.check("p")
    clock.advance(50)
    registry.record_success("p", 0.1, 0.05, 3, 4, fallback=False)
    assert monitor.due_at("p") == clock.now() + 60
    clock.advance(30)  # 80 s after the probe, 30 s after the reply: not due
    await monitor.maybe_probe("p", wait=0.1)
    assert provider.counts.health_checks == 1
    clock.advance(31)
    await monitor.maybe_probe("p", wait=0.1)
    assert provider.counts.health_checks == 2


async def test_a_failing_provider_is_probed_even_while_serving() -> None:
    """The breaker's own probing is unchanged: an open circuit is probed at its spacing."""
    monitor, provider, registry, clock = served_setup()
    provider.set_health(False, "down")
    await monitor.check("p", max_age=0)
    assert not registry["p"].breaker.allows_traffic
    release = registry.serve("p")
    clock.advance(0.6)
    await monitor.maybe_probe("p", wait=0.1)
    assert provider.counts.health_checks == 2
    release()
