"""Hedging's policy and ledger: the delay from the measured p95, the per-100 budget."""

from __future__ import annotations

from types import SimpleNamespace

from src.core.config import HedgeConfig
from src.llm.walk.hedge import HedgeLedger, HedgePolicy


def _policy(**kw: object) -> HedgeLedger:
    base: dict[str, object] = {"enabled": True, "delay_factor": 2.0, "min_delay": 0.5,
                               "max_percent": 10, "embedded": False}
    return HedgeLedger(HedgePolicy.from_config(HedgeConfig.model_validate({**base, **kw})))


def test_delay_is_min_delay_until_measured_then_factor_times_p95() -> None:
    """No samples: min_delay; then max(min_delay, factor x p95 of the provider's TTFTs)."""
    p = _policy()
    assert p.delay("ollama") == 0.5
    for v in [0.1] * 95 + [2.0] * 5:
        p.observe_ttft("ollama", v)
    assert p.p95("ollama") == 0.1
    assert p.delay("ollama") == 0.5
    p.observe_ttft("ollama", 2.0)  # 6 slow of the last 100: the p95 is now slow
    assert p.p95("ollama") == 2.0 and p.delay("ollama") == 4.0
    assert p.delay("lmstudio") == 0.5  # per provider


def test_budget_allows_max_percent_of_the_last_100_requests() -> None:
    """10%: however eagerly asked, at most 10 hedges over the last 100 requests."""
    p = _policy()
    granted = 0
    for _ in range(300):
        p.request_started()
        granted += p.take() + p.take()
        assert sum(p._recent) <= 10
    assert granted == 30 and p.hedged == 30 and p.requests == 300


def test_zero_percent_never_hedges() -> None:
    """max_percent 0 turns hedging off in effect."""
    p = _policy(max_percent=0)
    p.request_started()
    assert not p.take()


def _pool(*entries: tuple[str, str, bool]) -> dict[str, SimpleNamespace]:
    """A stand-in for ProviderRegistry: name -> state with ``usable`` and ``provider.kind``."""
    return {name: SimpleNamespace(usable=usable, provider=SimpleNamespace(kind=kind))
            for name, kind, usable in entries}


def test_target_is_the_next_usable_provider_never_embedded_unless_allowed() -> None:
    """Skips tried and unusable providers; the embedded model only with hedge.embedded."""
    registry = _pool(("ollama", "ollama", True), ("down", "openai", False),
                 ("embedded", "embedded", True), ("lmstudio", "lmstudio", True))
    order = ["ollama", "down", "embedded", "lmstudio"]
    assert _policy().policy.target(registry, order, {"ollama"}) == "lmstudio"  # type: ignore[arg-type]
    assert _policy(embedded=True).policy.target(registry, order, {"ollama"}) == "embedded"  # type: ignore[arg-type]
    assert _policy().policy.target(registry, order, {"ollama", "lmstudio"}) is None  # type: ignore[arg-type]


def test_no_hedge_when_the_first_token_timeout_comes_first() -> None:
    """A hedge delay at or past the provider's own first-token timeout means no hedge."""
    quick = SimpleNamespace(name="ollama", first_token_timeout=0.4)
    slow = SimpleNamespace(name="ollama", first_token_timeout=30.0)
    assert _policy().delay_for(quick) is None  # type: ignore[arg-type]
    assert _policy().delay_for(slow) == 0.5  # type: ignore[arg-type]
