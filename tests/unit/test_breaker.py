"""The circuit breaker's states and transitions, over a manual clock."""

from __future__ import annotations

import dataclasses

import pytest

from src.core.config import DemiConfig
from src.llm.clock import ManualClock
from src.llm.state.breaker import BreakerPolicy, BreakerState, CircuitBreaker

POLICY = BreakerPolicy(failure_threshold=1, recovery_successes=2, probe_interval=0.5,
                       backoff_max=30.0)


def make(**kw: object) -> tuple[CircuitBreaker, ManualClock, list[tuple[str, str, str]]]:
    clock = ManualClock()
    events: list[tuple[str, str, str]] = []
    breaker = CircuitBreaker(
        "ollama", clock, dataclasses.replace(POLICY, **kw),  # type: ignore[arg-type]
        listener=lambda n, old, new, why: events.append((old.value, new.value, why)),
    )
    return breaker, clock, events


def test_starts_closed_and_allows_traffic() -> None:
    """A new breaker lets traffic through."""
    breaker, _, _ = make()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows_traffic


def test_opens_after_threshold_failures() -> None:
    """failure_threshold consecutive failures open the circuit; fewer do not."""
    breaker, _, events = make(failure_threshold=3)
    breaker.record_failure("refused")
    breaker.record_failure("refused")
    assert breaker.allows_traffic
    breaker.record_failure("refused")
    assert breaker.state is BreakerState.OPEN
    assert events == [("closed", "open", "refused")]


def test_success_resets_failure_count() -> None:
    """A success between failures means they are not consecutive."""
    breaker, _, _ = make(failure_threshold=2)
    breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    assert breaker.allows_traffic


def test_recovery_needs_consecutive_successes() -> None:
    """Open → half-open on one good probe → closed only after recovery_successes in a row."""
    breaker, _, events = make(recovery_successes=3)
    breaker.record_failure("down")
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allows_traffic
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert [e[1] for e in events] == ["open", "half_open", "closed"]


def test_failure_in_half_open_reopens_and_backs_off() -> None:
    """A flap (failure while half-open) re-opens and doubles the probe spacing."""
    breaker, _, _ = make(probe_interval=0.5, backoff_max=30)
    breaker.record_failure("down")
    assert breaker.probe_spacing() == 0.5
    breaker.record_success()
    breaker.record_failure("down again")
    assert breaker.state is BreakerState.OPEN
    assert breaker.probe_spacing() == 1.0


def test_long_outage_keeps_probing_quickly() -> None:
    """A provider that simply stays down is probed at probe_interval, not backed off."""
    breaker, clock, _ = make(probe_interval=0.5)
    breaker.record_failure("down")
    for _ in range(20):
        clock.advance(10)
        breaker.record_failure("still down")
    assert breaker.probe_spacing() == 0.5


def test_reopening_soon_after_closing_backs_off_and_is_capped() -> None:
    """Flapping right after recovery doubles the spacing each time, up to backoff_max."""
    breaker, clock, _ = make(probe_interval=1, backoff_max=4, recovery_successes=1)
    spacings = []
    for _ in range(5):
        breaker.record_failure("flap")
        spacings.append(breaker.probe_spacing())
        breaker.record_success()
        clock.advance(0.1)
    assert spacings == [1, 2, 4, 4, 4]


def test_reopening_long_after_closing_starts_fresh() -> None:
    """An outage long after the last recovery is not treated as a flap."""
    breaker, clock, _ = make(probe_interval=1, backoff_max=4, recovery_successes=1)
    breaker.record_failure("a")
    breaker.record_success()
    breaker.record_failure("b")
    breaker.record_success()
    clock.advance(100)
    breaker.record_failure("c")
    assert breaker.probe_spacing() == 1


def test_force_open_from_startup() -> None:
    """A provider that failed its first check is opened without counting failures."""
    breaker, _, events = make(failure_threshold=5)
    breaker.force_open("refused at start")
    assert breaker.state is BreakerState.OPEN
    assert breaker.last_reason == "refused at start"
    assert events == [("closed", "open", "refused at start")]


def test_policy_is_a_frozen_value_built_from_the_config() -> None:
    """The breaker's policy comes from the config alone, and cannot be changed."""
    policy = BreakerPolicy.from_config(DemiConfig.defaults().llm)
    assert policy == POLICY
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.failure_threshold = 5  # type: ignore[misc]
