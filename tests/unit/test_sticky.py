"""Sticky conversations: prefix digests, the bounded table, and the wrapping strategy."""

from __future__ import annotations

from typing import Any

from src.core.config import DemiConfig
from src.llm.routing.build import make_strategy
from src.llm.routing.sticky import StickyStrategy, StickyTable, prefix_digests
from src.llm.routing.strategies import RoundRobinStrategy
from src.llm.routing.strategy import Outcome, RouteContext

CHAIN = ["a", "b", "embedded"]


def turn(n: int, tag: str = "x") -> list[dict[str, Any]]:
    """A conversation of n user/assistant exchanges ending with a user message."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": f"sys {tag}"}]
    for i in range(n):
        msgs.append({"role": "user", "content": f"q{i} {tag}"})
        if i < n - 1:
            msgs.append({"role": "assistant", "content": f"a{i}"})
    return msgs


def ctx(msgs: list[dict[str, Any]], available: frozenset[str] = frozenset(CHAIN)) -> RouteContext:
    return RouteContext(available=available, stats={}, regions={},
                        last_resort=frozenset({"embedded"}), messages=msgs)


def test_prefix_digests_extend_each_other() -> None:
    """Each prefix has its own digest and a longer conversation repeats the shorter's."""
    short, long = prefix_digests(turn(1)), prefix_digests(turn(2))
    assert long[: len(short)] == short and len(set(long)) == len(long)


def test_next_turn_returns_to_the_same_provider() -> None:
    """Turn 2 of a conversation goes where turn 1 was served, not where rotation points."""
    sticky = StickyStrategy(RoundRobinStrategy(), StickyTable(16, 60))
    first = sticky.choose(CHAIN, ctx(turn(1)))[0]
    sticky.observe(Outcome(first, ok=True, messages=turn(1)))
    for n in range(2, 6):
        assert sticky.choose(CHAIN, ctx(turn(n)))[0] == first
        sticky.observe(Outcome(first, ok=True, messages=turn(n)))
    assert sticky.describe()["sticky"]["hits"] == 4


def test_unusable_provider_is_not_a_hit() -> None:
    """A remembered provider that is down is skipped and the lookup counts as a miss."""
    sticky = StickyStrategy(RoundRobinStrategy(), StickyTable(16, 60))
    sticky.observe(Outcome("a", ok=True, messages=turn(1)))
    order = sticky.choose(CHAIN, ctx(turn(2), frozenset({"b"})))
    assert order == CHAIN  # the wrapped strategy's order; the walk moves the down "a" back
    assert (sticky.hits, sticky.lookups) == (0, 1)


def test_last_resort_never_attracts_a_conversation() -> None:
    """A turn the embedded model answered does not keep the next turn there."""
    sticky = StickyStrategy(RoundRobinStrategy(), StickyTable(16, 60))
    sticky.observe(Outcome("embedded", ok=True, messages=turn(1)))
    assert sticky.choose(CHAIN, ctx(turn(2)))[0] in ("a", "b")


def test_table_is_bounded_in_size_and_age() -> None:
    """Oldest entries are forgotten past `size`; entries older than `ttl` do not match."""
    clock = [0.0]
    table = StickyTable(2, 10, now=lambda: clock[0])
    for tag in "xyz":
        table.remember(turn(1, tag), "a")
    assert len(table) == 2
    assert table.lookup(turn(2, "x")) is None
    assert table.lookup(turn(2, "z")) == "a"
    clock[0] = 11.0
    assert table.lookup(turn(2, "z")) is None


def test_identical_request_is_not_a_continuation() -> None:
    """Repeating the same request does not match itself (only a strictly longer one does)."""
    table = StickyTable(4, 10)
    table.remember(turn(2), "a")
    assert table.lookup(turn(2)) is None


def test_sticky_defaults_follow_the_strategy() -> None:
    """sticky: null is on for spreading strategies with 2+ providers, off for failover."""
    def build(routing: dict[str, Any], providers: int = 2) -> object:
        cfg = DemiConfig.from_mapping({"llm": {"routing": routing}}).llm.routing
        return make_strategy(cfg, providers=providers)

    assert isinstance(build({"strategy": "round_robin"}), StickyStrategy)
    assert not isinstance(build({"strategy": "round_robin"}, providers=1), StickyStrategy)
    assert not isinstance(build({"strategy": "failover"}), StickyStrategy)
    assert isinstance(build({"strategy": "failover", "sticky": True}), StickyStrategy)
    assert not isinstance(build({"strategy": "quality", "sticky": False}), StickyStrategy)
