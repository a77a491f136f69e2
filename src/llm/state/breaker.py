"""A circuit breaker per provider: closed, open, half-open, as explicit states.

Why: without it, a dead primary is retried on every message and a flapping one makes DEMI
switch back and forth. The breaker decides whether traffic may go to a provider; health
probes (not user messages) are how an open breaker closes again.

* ``CLOSED``    traffic flows. ``failure_threshold`` consecutive failures open it.
* ``OPEN``      no traffic. Probes are allowed every ``probe_spacing()`` seconds. That
                spacing doubles each time the provider flaps (re-opens from half-open, or
                within ``backoff_max`` seconds of closing), up to ``backoff_max``; a
                provider that is simply down stays at ``probe_interval``, so recovery
                after a long outage is still quick.
* ``HALF_OPEN`` at least one probe succeeded. ``recovery_successes`` consecutive successes
                close it; one failure opens it again.

The breaker never sleeps and never awaits: it is a pure state machine over an injected
clock, so it is unit-tested without time passing and holds no lock across I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ...core.config import LLMConfig
from ..clock import Clock


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[str, BreakerState, BreakerState, str], None]
"""Called as ``listener(provider, old_state, new_state, reason)`` on every transition."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and closes: a value built once from the config, shared by all."""

    failure_threshold: int
    recovery_successes: int
    probe_interval: float
    backoff_max: float

    @classmethod
    def from_config(cls, llm: LLMConfig) -> BreakerPolicy:
        return cls(
            failure_threshold=llm.failure_threshold,
            recovery_successes=llm.recovery_successes,
            probe_interval=llm.probe_interval,
            backoff_max=llm.probe_backoff_max,
        )


class CircuitBreaker:
    def __init__(
        self, name: str, clock: Clock, policy: BreakerPolicy, *, listener: Listener | None = None,
    ) -> None:
        self.name = name
        self._clock = clock
        self.policy = policy
        self.failure_threshold = policy.failure_threshold
        self.recovery_successes = policy.recovery_successes
        self.probe_interval = policy.probe_interval
        self.backoff_max = policy.backoff_max
        self._listener = listener
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.successes = 0
        self.trips = 0
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.hold_until: float | None = None
        self.last_reason: str | None = None

    @property
    def allows_traffic(self) -> bool:
        return self.state is BreakerState.CLOSED

    def probe_spacing(self) -> float:
        """Seconds between probes while not closed: doubles per consecutive trip."""
        return min(self.backoff_max, self.probe_interval * (2 ** max(0, self.trips - 1)))

    def next_probe_at(self, last_probe: float) -> float:
        """When a provider last probed at ``last_probe`` may be probed again."""
        return max(last_probe + self.probe_spacing(), self.hold_until or 0.0)

    @property
    def held(self) -> bool:
        """True while a server's Retry-After keeps it closed to traffic whatever probes say."""
        return self.hold_until is not None and self._clock.now() < self.hold_until

    def record_success(self) -> None:
        """A request or probe succeeded (ignored while a Retry-After hold lasts)."""
        self.failures = 0
        if self.state is BreakerState.CLOSED or self.held:
            return
        self.successes += 1
        if self.successes >= self.recovery_successes:
            self._move(BreakerState.CLOSED, "recovered")
        elif self.state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN, "probe succeeded")

    def record_failure(self, reason: str, *, hold: float | None = None) -> None:
        """A request or probe failed for a reason that counts against health.

        ``hold`` is the server's Retry-After in seconds: the circuit stays open at least
        that long, because a busy server's model list still answers while its chats do not.
        """
        self.last_reason = reason
        self.successes = 0
        if hold:
            self.hold_until = max(self.hold_until or 0.0, self._clock.now() + hold)
        if self.state is BreakerState.CLOSED:
            self.failures += 1
            if self.failures >= self.failure_threshold:
                recently = (
                    self.closed_at is not None
                    and self._clock.now() - self.closed_at < self.backoff_max
                )
                self.trips = self.trips + 1 if recently else 1
                self._open(reason)
        elif self.state is BreakerState.HALF_OPEN:
            self.trips += 1
            self._open(reason)

    def force_open(self, reason: str) -> None:
        """Open without counting (a failed start-up check: the provider was never up)."""
        self.last_reason = reason
        self.successes = 0
        if self.state is not BreakerState.OPEN:
            self.trips = max(self.trips, 1)
            self._open(reason)

    def _open(self, reason: str) -> None:
        self.failures = 0
        self.opened_at = self._clock.now()
        self._move(BreakerState.OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> None:
        old, self.state = self.state, new
        if new is not BreakerState.HALF_OPEN:
            self.successes = 0
        if new is BreakerState.CLOSED:
            self.closed_at = self._clock.now()
        if self._listener is not None and old is not new:
            self._listener(self.name, old, new, reason)
