"""The canary strategy: a share of traffic on a provider under test, rolled back by itself.

``percent`` % of requests start at the canary; the rest start at the others (the canary
stays behind them as a fallback). The split is deterministic, not a dice roll: a running
total adds ``percent`` per request and sends the request to the canary each time it
passes 100, so any run of requests gets the share to within one request.

Every outcome at the canary goes into a window of its last ``window`` requests; the
others' successful first-token times make the baseline.
A regression sets the share to 0 % at once, logs one WARNING line with the numbers and
stays visible in ``/status`` until an operator resumes or changes it (``POST
/admin/canary``, :meth:`CanaryStrategy.update`):

* errors: more than ``max_error_rate`` × ``window`` failures among the last ``window``
  requests. Judged as soon as that many errors are in: the rest of the window could not
  bring the rate back under the limit.
* slowness: with a full window, the canary's p95 time to first token above
  ``max_ttft_ratio`` × the baseline's p95, the baseline taken as at least ``ttft_floor``
  seconds (3 ms against 1 ms is jitter, not a regression).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ...core.config import RoutingConfig
from .strategy import Outcome, RouteContext, Strategy


def p95(values: Sequence[float]) -> float:
    """The nearest-rank 95th percentile (the value 95 % of the samples do not exceed).

    >>> p95([1.0] * 19 + [9.0])
    1.0
    >>> p95([1.0, 2.0])
    2.0
    """
    ranked = sorted(values)
    return ranked[max(0, math.ceil(0.95 * len(ranked)) - 1)]


class CanaryStrategy(Strategy):
    name = "canary"

    def __init__(
        self, canary: str | None, percent: float, *, window: int = 20,
        max_error_rate: float = 0.2, max_ttft_ratio: float = 2.0, ttft_floor: float = 0.0,
        logger: logging.Logger | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.canary = canary
        self.percent = percent
        self.window = window
        self.max_error_rate = max_error_rate
        self.max_ttft_ratio = max_ttft_ratio
        self.ttft_floor = ttft_floor
        self._credit = 0.0
        self._wall = wall
        self.logger = logger or logging.getLogger("demi.llm")
        self.rollback: dict[str, Any] | None = None
        self._outcomes: deque[tuple[bool, float | None]] = deque(maxlen=window)
        self._baseline: deque[float] = deque(maxlen=window)

    @classmethod
    def from_config(
        cls, cfg: RoutingConfig, logger: logging.Logger | None = None,
    ) -> CanaryStrategy:
        provider, percent = cfg.canary_target
        c = cfg.canary
        return cls(provider, percent, window=c.window, max_error_rate=c.max_error_rate,
                   max_ttft_ratio=c.max_ttft_ratio, ttft_floor=c.ttft_floor, logger=logger)

    # -- ordering ----------------------------------------------------------------------
    def _split(self, chain: Sequence[str]) -> tuple[list[str], bool]:
        rest = [n for n in chain if n != self.canary]
        return rest, bool(self.canary) and self.canary in chain

    def _choose(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        rest, present = self._split(chain)
        if not present:
            return list(chain)
        assert self.canary is not None
        self._credit += self.percent
        if self._credit >= 100:
            self._credit -= 100
            return [self.canary, *rest]
        return [*rest, self.canary]

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """Where most requests start: the canary only when it gets more than half."""
        rest, present = self._split(chain)
        if not present:
            return list(chain)
        assert self.canary is not None
        return [self.canary, *rest] if self.percent > 50 else [*rest, self.canary]

    # -- judging -----------------------------------------------------------------------
    def observe(self, outcome: Outcome) -> None:
        # A fallback's TTFT includes the time the failed providers took: not its own speed.
        ttft = None if outcome.fallback else outcome.ttft
        if outcome.provider != self.canary:
            if outcome.ok and ttft is not None:
                self._baseline.append(ttft)
            return
        if self.percent <= 0:
            return  # rolled back or not started: fallback traffic does not judge it
        self._outcomes.append((outcome.ok, ttft))
        self._judge()

    def _judge(self) -> None:
        errors = sum(1 for ok, _ in self._outcomes if not ok)
        if errors > self.max_error_rate * self.window:
            self._roll_back("error rate", error_rate=round(errors / len(self._outcomes), 4),
                            errors=errors)
            return
        if len(self._outcomes) < self.window or not self._baseline:
            return
        ttfts = [t for ok, t in self._outcomes if ok and t is not None]
        if not ttfts:
            return
        mine, base = p95(ttfts), p95(self._baseline)
        if mine > self.max_ttft_ratio * max(base, self.ttft_floor):
            self._roll_back("time to first token", p95_ttft_s=round(mine, 4),
                            baseline_p95_ttft_s=round(base, 4),
                            ratio=round(mine / base, 2) if base > 0 else None)

    def _roll_back(self, cause: str, **numbers: Any) -> None:
        previous = self.percent
        self.percent = 0.0
        self.rollback = {"time": self._wall(), "cause": cause, "window": len(self._outcomes),
                         "from_percent": previous, **numbers}
        limits = (f"max_error_rate {self.max_error_rate}" if cause == "error rate"
                  else f"max_ttft_ratio {self.max_ttft_ratio}")
        detail = ", ".join(f"{k} {v}" for k, v in numbers.items())
        self.logger.warning(
            "Canary %s rolled back from %g%% to 0%%: %s regressed over its last %d "
            "requests (%s; limit %s)", self.canary, previous, cause, len(self._outcomes),
            detail, limits,
        )

    # -- operator ----------------------------------------------------------------------
    def update(self, *, provider: str | None = None, percent: float | None = None) -> None:
        """Resume (or change) the canary: a new share and/or provider, a fresh window.

        Without a new ``percent``, a rolled-back canary resumes at the share it had.
        """
        if provider is not None:
            self.canary = provider
        if percent is not None:
            self.percent = percent
            self._credit = 0.0
        elif self.rollback is not None:
            self.percent = self.rollback["from_percent"]
        self.rollback = None
        self._outcomes.clear()
        self.logger.info("Canary %s set to %g%% of requests", self.canary, self.percent)

    def describe(self) -> dict[str, Any]:
        errors = sum(1 for ok, _ in self._outcomes if not ok)
        return {"canary": {
            "provider": self.canary,
            "percent": self.percent,
            "state": "rolled_back" if self.rollback else (
                "running" if self.percent > 0 else "off"),
            "window": self.window,
            "observed": len(self._outcomes),
            "errors": errors,
            "max_error_rate": self.max_error_rate,
            "max_ttft_ratio": self.max_ttft_ratio,
            "ttft_floor_s": self.ttft_floor,
            "rollback": self.rollback,
        }}
