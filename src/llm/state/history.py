"""What happened recently, for people: switches, breaker moves, failures, counters.

``/status`` and the status page show it; nothing in routing reads it. Bounded deques keep
memory flat however long DEMI runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..clock import Clock


class History:
    """The recent events and counters of one LLM layer (shown, never routed on)."""

    def __init__(self, clock: Clock, keep: int = 50) -> None:
        self._clock = clock
        self.switches: deque[dict[str, Any]] = deque(maxlen=keep)
        self.breaker_events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.recent_failures: deque[dict[str, Any]] = deque(maxlen=keep)
        self.requests = 0
        self.fallbacks = 0
        self.exhausted = 0
        self.failures = 0
        self.continuations = 0
        self.started_wall = clock.wall()
        self._watchers: list[Callable[[dict[str, Any]], None]] = []

    def watch_switches(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every switch from now on; returns the unsubscribe."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def record_switch(self, old: str, new: str, reason: str, *, kind: str = "other",
                      why: str | None = None) -> None:
        """``kind``: ``recovered`` (back to the preferred provider), ``failed`` (a request
        failed there), ``unavailable`` (a health check), ``pinned`` (force_provider);
        ``why`` the old provider's last error, if any."""
        event = {"time": self._clock.wall(), "from": old, "to": new, "reason": reason,
                 "kind": kind, "why": why}
        self.switches.append(event)
        for watcher in list(self._watchers):
            watcher(event)

    def record_breaker(self, name: str, old: str, new: str, reason: str) -> None:
        self.breaker_events.append(
            {"time": self._clock.wall(), "provider": name, "from": old, "to": new,
             "reason": reason}
        )

    def record_failure(self, name: str, reason: str) -> None:
        self.failures += 1
        self.recent_failures.append({"time": self._clock.wall(), "provider": name,
                                     "reason": reason})

    def record_request(self, name: str, fallback: bool) -> None:
        self.requests += 1
        self.fallbacks += fallback

    def record_exhausted(self) -> None:
        self.exhausted += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started_wall,
            "counters": {
                "requests": self.requests,
                "fallbacks": self.fallbacks,
                "provider_failures": self.failures,
                "all_failed": self.exhausted,
                "stream_continuations": self.continuations,
            },
            "switches": list(self.switches),
            "breaker_events": list(self.breaker_events),
            "recent_failures": list(self.recent_failures),
        }
