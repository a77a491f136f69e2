"""Routing strategies order providers; they never call them."""

from __future__ import annotations

from src.core.config import DemiConfig
from src.llm.routing import (
    AffinityStrategy,
    CanaryStrategy,
    NearestStrategy,
    QualityStrategy,
    RoundRobinStrategy,
    RouteContext,
    make_strategy,
)
from src.llm.stats import ProviderStats

CHAIN = ["ollama", "lmstudio", "embedded"]


def ctx(**kw: object) -> RouteContext:
    base: dict[str, object] = {
        "available": frozenset(CHAIN), "stats": {}, "regions": {}, "workload": None,
    }
    base.update(kw)
    return RouteContext(**base)  # type: ignore[arg-type]


def test_failover_keeps_chain() -> None:
    """The default strategy is the configured chain."""
    assert make_strategy(DemiConfig.defaults().llm.routing).order(CHAIN, ctx()) == CHAIN


def test_round_robin_rotates_over_available() -> None:
    """Round-robin rotates the start among providers that are up; down ones stay last."""
    rr = RoundRobinStrategy()
    c = ctx(available=frozenset({"ollama", "lmstudio"}))
    firsts = [rr.order(CHAIN, c)[0] for _ in range(4)]
    assert firsts == ["ollama", "lmstudio", "ollama", "lmstudio"]
    assert rr.order(CHAIN, c)[-1] == "embedded"


def test_nearest_prefers_region_then_latency() -> None:
    """Providers in the preferred region come first, then the fastest measured."""
    fast, slow = ProviderStats(), ProviderStats()
    fast.record_probe(0.001)
    slow.record_probe(0.5)
    strategy = NearestStrategy("eu")
    c = ctx(stats={"ollama": slow, "lmstudio": fast},
            regions={"ollama": "us", "lmstudio": "us", "embedded": "eu"})
    assert strategy.order(CHAIN, c) == ["embedded", "lmstudio", "ollama"]


def test_quality_demotes_unreliable_provider() -> None:
    """A provider that fails often is ordered after a reliable one."""
    bad, good = ProviderStats(), ProviderStats()
    for _ in range(5):
        bad.record_failure()
        good.record_success(0.1, 0.05, 1, 1, False)
    order = QualityStrategy().order(CHAIN, ctx(stats={"ollama": bad, "lmstudio": good}))
    assert order.index("lmstudio") < order.index("ollama")


def test_canary_share_follows_percent() -> None:
    """canary_percent of requests start at the canary provider, decided by the random draw."""
    draws = iter([0.05, 0.5, 0.09, 0.95])
    strategy = CanaryStrategy("lmstudio", 10, rand=lambda: next(draws))
    firsts = [strategy.order(CHAIN, ctx())[0] for _ in range(4)]
    assert firsts == ["lmstudio", "ollama", "lmstudio", "ollama"]


def test_affinity_routes_workload_to_preferred() -> None:
    """A workload with an affinity starts at its preferred providers."""
    strategy = AffinityStrategy({"code": ["lmstudio"]})
    assert strategy.order(CHAIN, ctx(workload="code"))[0] == "lmstudio"
    assert strategy.order(CHAIN, ctx(workload="chat")) == CHAIN
