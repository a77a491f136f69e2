"""Routing strategies order providers; they never call them."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from src.core.config import DemiConfig
from src.llm.factory import last_resort, provider_weights
from src.llm.routing.build import make_strategy
from src.llm.routing.canary import CanaryStrategy
from src.llm.routing.strategies import (
    AffinityStrategy,
    FailoverStrategy,
    NearestStrategy,
    QualityStrategy,
    RoundRobinStrategy,
)
from src.llm.routing.strategy import Outcome, RouteContext, Strategy
from src.llm.state.stats import ProviderStats

CHAIN = ["ollama", "lmstudio", "embedded"]


def ctx(**kw: object) -> RouteContext:
    base: dict[str, object] = {
        "available": frozenset(CHAIN), "stats": {}, "regions": {}, "workload": None,
    }
    base.update(kw)
    return RouteContext(**base)  # type: ignore[arg-type]


def test_failover_keeps_chain() -> None:
    """The default strategy is the configured chain."""
    assert make_strategy(DemiConfig.defaults().llm.routing).choose(CHAIN, ctx()) == CHAIN


def test_round_robin_rotates_over_available() -> None:
    """Round-robin rotates the start among providers that are up; down ones stay last."""
    rr = RoundRobinStrategy()
    c = ctx(available=frozenset({"ollama", "lmstudio"}))
    firsts = [rr.choose(CHAIN, c)[0] for _ in range(4)]
    assert firsts == ["ollama", "lmstudio", "ollama", "lmstudio"]
    assert rr.choose(CHAIN, c)[-1] == "embedded"


def test_nearest_prefers_region_then_latency() -> None:
    """Providers in the preferred region come first, then the fastest measured."""
    fast, slow = ProviderStats(), ProviderStats()
    fast.record_probe(0.001)
    slow.record_probe(0.5)
    strategy = NearestStrategy("eu")
    c = ctx(stats={"ollama": slow, "lmstudio": fast},
            regions={"ollama": "us", "lmstudio": "us", "embedded": "eu"})
    assert strategy.choose(CHAIN, c) == ["embedded", "lmstudio", "ollama"]


def test_quality_demotes_unreliable_provider() -> None:
    """A provider that fails often is ordered after a reliable one."""
    bad, good = ProviderStats(), ProviderStats()
    for _ in range(5):
        bad.record_failure()
        good.record_success(0.1, 0.05, 1, 1, False)
    order = QualityStrategy().choose(CHAIN, ctx(stats={"ollama": bad, "lmstudio": good}))
    assert order.index("lmstudio") < order.index("ollama")


def test_canary_share_follows_percent() -> None:
    """percent % of requests start at the canary, spread evenly (one in four for 25 %)."""
    strategy = CanaryStrategy("lmstudio", 25)
    firsts = [strategy.choose(CHAIN, ctx())[0] for _ in range(8)]
    assert firsts == ["ollama", "ollama", "ollama", "lmstudio"] * 2
    assert Counter(strategy.choose(CHAIN, ctx())[0] for _ in range(1000))["lmstudio"] == 250


def test_affinity_routes_workload_to_preferred() -> None:
    """A workload with an affinity starts at its preferred providers."""
    strategy = AffinityStrategy({"code": ["lmstudio"]})
    assert strategy.choose(CHAIN, ctx(workload="code"))[0] == "lmstudio"
    assert strategy.choose(CHAIN, ctx(workload="chat")) == CHAIN


TAIL = frozenset({"embedded"})
ALL_STRATEGIES: list[Strategy] = [
    FailoverStrategy(), RoundRobinStrategy(), NearestStrategy(None), QualityStrategy(),
    CanaryStrategy("embedded", 100), AffinityStrategy({"code": ["embedded"]}),
]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES, ids=lambda s: s.name)
def test_every_strategy_keeps_the_last_resort_last(strategy: Strategy) -> None:
    """Whatever a strategy measures or is told, the embedded model stays last while it is
    the chain's last resort (no rotation into it, no win on a 0 ms probe)."""
    quick = ProviderStats()
    quick.record_probe(0.0)
    c = ctx(last_resort=TAIL, stats={"embedded": quick}, workload="code")
    for _ in range(5):
        assert strategy.choose(CHAIN, c)[-1] == "embedded"
        assert strategy.rank(CHAIN, c)[-1] == "embedded"


def test_last_resort_is_embedded_only_when_last() -> None:
    """An llm.order that puts the embedded model elsewhere makes it an ordinary member."""
    assert last_resort(["ollama", "lmstudio", "embedded"]) == TAIL
    assert last_resort(["ollama", "embedded", "lmstudio"]) == frozenset()
    assert last_resort(["embedded"]) == frozenset()


def test_round_robin_follows_weights_exactly() -> None:
    """Smooth weighted round-robin: 400 requests split 3:1 give exactly 300 and 100."""
    rr = RoundRobinStrategy({"ollama": 3, "lmstudio": 1})
    firsts = Counter(rr.choose(CHAIN, ctx(last_resort=TAIL))[0] for _ in range(400))
    assert firsts == {"ollama": 300, "lmstudio": 100}


def test_round_robin_interleaves_instead_of_bursting() -> None:
    """A 2:1 weighting alternates within each cycle rather than sending runs of requests."""
    rr = RoundRobinStrategy({"ollama": 2, "lmstudio": 1})
    firsts = [rr.choose(CHAIN, ctx(last_resort=TAIL))[0] for _ in range(6)]
    assert firsts == ["ollama", "lmstudio", "ollama"] * 2


def test_weights_come_from_entries_and_routing_weights() -> None:
    """Entries carry `weight`; the guide's pair and the embedded model use routing.weights."""
    config = DemiConfig.from_mapping({"llm": {
        "routing": {"weights": {"lmstudio": 2}},
        "providers": [{"name": "box", "base_url": "http://h:1", "weight": 5}],
    }})
    weights = provider_weights(config.llm)
    assert weights["ollama"] == 1 and weights["lmstudio"] == 2 and weights["box"] == 5


def test_quality_untried_provider_gets_a_neutral_prior() -> None:
    """An untried provider ranks below a measured fast one and above a measured slow one."""
    fast, slow = ProviderStats(), ProviderStats()
    for _ in range(3):
        fast.record_success(0.5, 0.01, 5, 100, False)
        slow.record_success(10.0, 3.0, 5, 20, False)
    order = QualityStrategy().choose(["slow", "new", "fast"],
                                    ctx(stats={"fast": fast, "slow": slow}))
    assert order == ["fast", "new", "slow"]


def test_quality_score_uses_tokens_per_second() -> None:
    """Between two equally reliable providers with the same first token, faster
    generation scores higher; the EWMA of tokens/s is in the stats."""
    quick, sluggish = ProviderStats(), ProviderStats()
    quick.record_success(1.1, 0.1, 5, 100, False)
    sluggish.record_success(10.1, 0.1, 5, 100, False)
    assert quick.tokens_per_s_ewma == pytest.approx(100.0)
    assert quick.quality_score() > sluggish.quality_score()
    assert quick.as_dict()["tokens_per_s_ewma"] == pytest.approx(100.0)


def test_nearest_probes_count_only_until_a_real_request() -> None:
    """Probe latency ranks providers until a real request is measured; then an unmeasured
    provider ranks as the median of the measured ones, never by its probe."""
    a, b = ProviderStats(), ProviderStats()
    a.record_probe(0.5)
    b.record_probe(0.001)
    strategy = NearestStrategy(None)
    assert strategy.choose(["a", "b"], ctx(stats={"a": a, "b": b})) == ["b", "a"]
    a.record_success(0.3, 0.2, 1, 1, False)
    c = ProviderStats()
    c.record_success(0.5, 0.4, 1, 1, False)
    c.record_probe(0.0001)
    # b has only a probe (0.001 s): it ranks as the median of a (0.2) and c (0.4).
    order = strategy.choose(["c", "b", "a"], ctx(stats={"a": a, "b": b, "c": c}))
    assert order == ["a", "b", "c"]


def test_nearest_region_beats_latency() -> None:
    """A provider in the configured region comes first even when slower."""
    near, far = ProviderStats(), ProviderStats()
    near.record_success(2, 1.0, 1, 1, False)
    far.record_success(0.2, 0.1, 1, 1, False)
    order = NearestStrategy("eu").choose(
        ["far", "near"], ctx(stats={"near": near, "far": far},
                             regions={"near": "eu", "far": "us"}))
    assert order == ["near", "far"]


def _canary(**kw: object) -> CanaryStrategy:
    base: dict[str, object] = {"window": 10, "max_error_rate": 0.2, "max_ttft_ratio": 2.0,
                               "wall": lambda: 1000.0}
    base.update(kw)
    return CanaryStrategy("lmstudio", 30, **base)  # type: ignore[arg-type]


def test_canary_rolls_back_on_errors_once(caplog: pytest.LogCaptureFixture) -> None:
    """More errors than max_error_rate x window roll the share to 0 %, logged once."""
    canary = _canary()
    with caplog.at_level(logging.WARNING, logger="demi.llm"):
        for _ in range(5):
            canary.observe(Outcome("lmstudio", ok=False))
    assert canary.percent == 0
    assert canary.choose(CHAIN, ctx())[0] == "ollama"
    state = canary.describe()["canary"]
    assert state["state"] == "rolled_back" and state["rollback"]["errors"] == 3
    lines = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    assert len(lines) == 1 and "error rate" in lines[0] and "30%" in lines[0]


def test_canary_rolls_back_on_slow_first_token() -> None:
    """With a full window, a canary p95 TTFT above ratio x the baseline's rolls it back."""
    canary = _canary()
    for _ in range(10):
        canary.observe(Outcome("ollama", ok=True, ttft=0.01))
    for _ in range(9):
        canary.observe(Outcome("lmstudio", ok=True, ttft=0.5))
    assert canary.percent == 30  # window not full yet
    canary.observe(Outcome("lmstudio", ok=True, ttft=0.5))
    rollback = canary.describe()["canary"]["rollback"]
    assert canary.percent == 0 and rollback["cause"] == "time to first token"
    assert rollback["baseline_p95_ttft_s"] == 0.01 and rollback["p95_ttft_s"] == 0.5


def test_canary_healthy_window_keeps_running_and_resume_clears() -> None:
    """A canary within its limits keeps its share; update() resumes after a rollback."""
    canary = _canary()
    for _ in range(10):
        canary.observe(Outcome("ollama", ok=True, ttft=0.01))
        canary.observe(Outcome("lmstudio", ok=True, ttft=0.015))
    canary.observe(Outcome("lmstudio", ok=False))
    assert canary.percent == 30 and canary.describe()["canary"]["state"] == "running"
    for _ in range(3):
        canary.observe(Outcome("lmstudio", ok=False))
    assert canary.percent == 0
    canary.update(percent=50)
    state = canary.describe()["canary"]
    assert state["state"] == "running" and state["observed"] == 0 and state["rollback"] is None


def test_canary_reads_new_and_deprecated_keys() -> None:
    """llm.routing.canary wins; the flat canary_provider/canary_percent still work."""
    old = DemiConfig.from_mapping({"llm": {"routing": {
        "strategy": "canary", "canary_provider": "lmstudio", "canary_percent": 10}}})
    new = DemiConfig.from_mapping({"llm": {"routing": {
        "strategy": "canary", "canary": {"provider": "lmstudio", "percent": 25}}}})
    assert old.llm.routing.canary_target == ("lmstudio", 10)
    strategy = make_strategy(new.llm.routing)
    assert isinstance(strategy, CanaryStrategy) and strategy.percent == 25


def test_canary_ignores_fallback_first_token_times() -> None:
    """A reply served as a fallback (its TTFT includes the failed providers' time) neither
    counts as canary slowness nor inflates the baseline."""
    canary = _canary()
    canary.observe(Outcome("ollama", ok=True, ttft=0.01))
    for _ in range(10):
        canary.observe(Outcome("lmstudio", ok=True, ttft=5.0, fallback=True))
    assert canary.percent == 30  # slow only because others failed first: no rollback
    for _ in range(10):
        canary.observe(Outcome("ollama", ok=True, ttft=5.0, fallback=True))
    for _ in range(10):
        canary.observe(Outcome("lmstudio", ok=True, ttft=0.5))
    rollback = canary.describe()["canary"]["rollback"]
    assert rollback is not None and rollback["baseline_p95_ttft_s"] == 0.01


def test_affinity_tag_entries_expand_to_tagged_providers() -> None:
    """`tag:gpu` in an affinity list stands for every provider tagged gpu, in chain order."""
    strategy = AffinityStrategy({"code": ["tag:gpu", "ollama"]},
                                {"box2": ["gpu"], "box1": ["gpu", "big"]})
    chain = ["ollama", "box1", "lmstudio", "box2"]
    assert strategy.choose(chain, ctx(workload="code")) == ["box1", "box2", "ollama", "lmstudio"]


def test_canary_ttft_floor_ignores_millisecond_jitter() -> None:
    """A canary at 5 ms against a 1 ms baseline is not slow when the floor is 100 ms; at
    400 ms it is (above 2 x the 100 ms floor)."""
    canary = _canary(ttft_floor=0.1)
    for _ in range(10):
        canary.observe(Outcome("ollama", ok=True, ttft=0.001))
        canary.observe(Outcome("lmstudio", ok=True, ttft=0.005))
    assert canary.percent == 30
    for _ in range(10):
        canary.observe(Outcome("lmstudio", ok=True, ttft=0.4))
    assert canary.percent == 0
