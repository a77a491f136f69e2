"""Routing strategies: each decides the order in which providers are tried for one request.

A strategy only orders names; it never calls a provider, and the chain walk in
``inference.py`` never knows which strategy is in force. Adding a strategy is adding a
small class here and a name to ``STRATEGIES``.

* ``failover``    the configured chain, primary first (the guide's behaviour).
* ``round_robin`` rotate the start of the chain over the providers that are up, spreading
                  load; the rest stay behind as fallbacks.
* ``nearest``     providers in ``routing.region`` first, then by measured time to first
                  token (the guide's "geographic selection", measured rather than assumed).
* ``quality``     by a score from measured reliability and speed (``ProviderStats``).
* ``canary``      ``canary_percent`` % of requests start at ``canary_provider``.
* ``affinity``    the request's ``workload`` (e.g. ``code``) picks preferred providers.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from src.core.config import RoutingConfig

from .stats import ProviderStats


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a strategy may look at: who is up, their stats and regions, the workload."""

    available: frozenset[str]
    stats: Mapping[str, ProviderStats]
    regions: Mapping[str, str | None]
    workload: str | None = None


class Strategy:
    name = "failover"

    def order(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """The order to try providers in for one request (may advance internal state)."""
        return list(chain)

    def preview(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """The order most requests get now, without side effects: what ``active_provider``
        and the switch log lines report. Strategies that rotate or draw lots override it."""
        return self.order(chain, ctx)


class FailoverStrategy(Strategy):
    name = "failover"


class RoundRobinStrategy(Strategy):
    name = "round_robin"

    def __init__(self) -> None:
        self._counter = itertools.count()

    def order(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        up = [n for n in chain if n in ctx.available]
        if len(up) < 2:
            return list(chain)
        k = next(self._counter) % len(up)
        rotated = up[k:] + up[:k]
        return rotated + [n for n in chain if n not in ctx.available]

    def preview(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """The rotation spreads load over equals; the chain order is the stable answer."""
        return list(chain)


class NearestStrategy(Strategy):
    name = "nearest"

    def __init__(self, region: str | None) -> None:
        self.region = region

    def order(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        position = {n: i for i, n in enumerate(chain)}

        def key(n: str) -> tuple[int, float, int]:
            local = 0 if self.region and ctx.regions.get(n) == self.region else 1
            stats = ctx.stats.get(n)
            latency = stats.expected_latency if stats else None
            return (local, latency if latency is not None else float("inf"), position[n])

        return sorted(chain, key=key)


class QualityStrategy(Strategy):
    name = "quality"

    def order(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        position = {n: i for i, n in enumerate(chain)}

        def key(n: str) -> tuple[float, int]:
            stats = ctx.stats.get(n)
            # Unmeasured providers keep their configured place among equals (score 1.0).
            score = stats.quality_score() if stats and stats.requests else 1.0
            return (-round(score, 3), position[n])

        return sorted(chain, key=key)


class CanaryStrategy(Strategy):
    name = "canary"

    def __init__(
        self, canary: str | None, percent: float, rand: Callable[[], float] = random.random,
    ) -> None:
        self.canary = canary
        self.percent = percent
        self._rand = rand

    def order(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        if not self.canary or self.canary not in chain:
            return list(chain)
        rest = [n for n in chain if n != self.canary]
        if self._rand() * 100 < self.percent:
            return [self.canary, *rest]
        return [*rest, self.canary]

    def preview(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """Where most requests start: the canary only when it gets more than half."""
        if not self.canary or self.canary not in chain:
            return list(chain)
        rest = [n for n in chain if n != self.canary]
        return [self.canary, *rest] if self.percent > 50 else [*rest, self.canary]


class AffinityStrategy(Strategy):
    name = "affinity"

    def __init__(self, affinity: Mapping[str, Sequence[str]]) -> None:
        self.affinity = {k: tuple(v) for k, v in affinity.items()}

    def order(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        preferred = [n for n in self.affinity.get(ctx.workload or "", ()) if n in chain]
        return preferred + [n for n in chain if n not in preferred]


STRATEGIES = ("failover", "round_robin", "nearest", "quality", "canary", "affinity")


def make_strategy(cfg: RoutingConfig) -> Strategy:
    """Build the configured strategy."""
    if cfg.strategy == "round_robin":
        return RoundRobinStrategy()
    if cfg.strategy == "nearest":
        return NearestStrategy(cfg.region)
    if cfg.strategy == "quality":
        return QualityStrategy()
    if cfg.strategy == "canary":
        return CanaryStrategy(cfg.canary_provider, cfg.canary_percent)
    if cfg.strategy == "affinity":
        return AffinityStrategy(cfg.affinity)
    return FailoverStrategy()
