"""The strategies that order providers by configuration or by what was measured.

* ``failover``    the configured chain, primary first (the guide's behaviour).
* ``round_robin`` smooth weighted round-robin over the providers that are up (``weight``);
                  the rest stay behind as fallbacks.
* ``nearest``     providers in ``routing.region`` first, then by measured time to first
                  token of real requests (the guide's "geographic selection").
* ``quality``     by a score from measured reliability and speed (``ProviderStats``).
* ``affinity``    the request's ``workload`` (e.g. ``code``) picks preferred providers.
* ``least_busy``  by load (requests in flight over ``max_concurrency``), then by measured
                  time to first token.

The canary (``canary.py``) and sticky conversations (``sticky.py``) have modules of their
own; ``strategy.py`` says what a strategy is.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from ..state.stats import ProviderStats
from .strategy import RouteContext, Strategy


class FailoverStrategy(Strategy):
    name = "failover"


class RoundRobinStrategy(Strategy):
    """Smooth weighted round-robin (nginx's): over any run of requests each provider that
    is up starts ``weight / total`` of them, interleaved rather than in bursts."""

    name = "round_robin"

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        self._current: dict[str, float] = {}

    def _choose(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        up = [n for n in chain if n in ctx.available]
        if len(up) < 2:
            return list(chain)
        total = 0.0
        for n in up:
            weight = self.weights.get(n, 1.0)
            self._current[n] = self._current.get(n, 0.0) + weight
            total += weight
        pick = max(up, key=lambda n: (self._current[n], -up.index(n)))
        self._current[pick] -= total
        return [pick, *(n for n in up if n != pick), *(n for n in chain if n not in up)]

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """The rotation spreads load over equals; the chain order is the stable answer."""
        return list(chain)


class NearestStrategy(Strategy):
    """Region first, then the measured time to first token of real requests.

    A health probe's latency says how fast a server answers ``/api/tags``, not how fast
    it starts a reply, so probes rank providers only until the first real request
    finishes anywhere; after that a provider with no request yet ranks as the median of
    the measured ones (neutral), not by its probe.
    """

    name = "nearest"

    def __init__(self, region: str | None) -> None:
        self.region = region

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        position = {n: i for i, n in enumerate(chain)}
        measured = {n: s.ttft_ewma for n in chain
                    if (s := ctx.stats.get(n)) is not None and s.ttft_ewma is not None}
        neutral = statistics.median(measured.values()) if measured else None

        def latency(n: str) -> float:
            if n in measured:
                return measured[n]
            if neutral is not None:
                return neutral
            stats = ctx.stats.get(n)
            probe = stats.probe_latency_ewma if stats is not None else None
            return probe if probe is not None else float("inf")

        def key(n: str) -> tuple[int, float, int]:
            local = 0 if self.region and ctx.regions.get(n) == self.region else 1
            return (local, latency(n), position[n])

        return sorted(chain, key=key)


class QualityStrategy(Strategy):
    """By :meth:`ProviderStats.quality_score`: EWMAs of success, TTFT and tokens/s from
    real requests. An untried provider has the neutral prior score (reliable, middling
    speed), so it ranks below a measured fast one and above a measured slow one."""

    name = "quality"

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        position = {n: i for i, n in enumerate(chain)}
        neutral = ProviderStats().quality_score()

        def key(n: str) -> tuple[float, int]:
            stats = ctx.stats.get(n)
            score = stats.quality_score() if stats is not None else neutral
            return (-round(score, 3), position[n])

        return sorted(chain, key=key)


class AffinityStrategy(Strategy):
    """The workload's preferred providers first. An entry ``tag:gpu`` stands for every
    provider tagged ``gpu`` (in chain order), so a fleet grows without editing affinity."""

    name = "affinity"

    def __init__(
        self, affinity: Mapping[str, Sequence[str]],
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.affinity = {k: tuple(v) for k, v in affinity.items()}
        self.tags = {k: tuple(v) for k, v in (tags or {}).items()}

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        preferred: list[str] = []
        for entry in self.affinity.get(ctx.workload or "", ()):
            tag = entry.removeprefix("tag:") if entry.startswith("tag:") else None
            names = [n for n in chain if tag in self.tags.get(n, ())] if tag else [entry]
            preferred += [n for n in names if n in chain and n not in preferred]
        return preferred + [n for n in chain if n not in preferred]




class LeastBusyStrategy(Strategy):
    """The provider with the most room first: requests in flight over its
    ``max_concurrency`` (a provider without a cap counts its requests in flight, as if it
    had one slot), then the measured time to first token of real requests, then the chain
    order. Reads only the registry's counts, so ranking it moves nothing."""

    name = "least_busy"

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        position = {n: i for i, n in enumerate(chain)}

        def key(n: str) -> tuple[float, float, int]:
            stats = ctx.stats.get(n)
            ttft = stats.ttft_ewma if stats is not None and stats.ttft_ewma else float("inf")
            return (ctx.load.get(n, 0.0), ttft, position[n])

        return sorted(chain, key=key)
