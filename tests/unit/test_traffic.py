"""Recent traffic per provider: fixed time buckets that roll over with an injected clock."""

from __future__ import annotations

from src.llm.clock import ManualClock
from src.llm.state.traffic import TrafficSeries


def test_buckets_count_requests_errors_and_mean_ttft() -> None:
    """Outcomes land in the current bucket; TTFT is the mean of the bucket's successes."""
    clock = ManualClock()
    series = TrafficSeries(clock, bucket_s=10, buckets=3)
    series.record(ok=True, ttft=0.1)
    series.record(ok=True, ttft=0.3)
    series.record(ok=False)
    recent = series.as_dict()
    assert recent["requests"] == [0, 0, 3] and recent["errors"] == [0, 0, 1]
    assert recent["ttft_ms"] == [None, None, 200.0]


def test_old_buckets_age_out() -> None:
    """Buckets older than the window read as empty, and a reused slot starts from zero."""
    clock = ManualClock()
    series = TrafficSeries(clock, bucket_s=10, buckets=3)
    series.record(ok=False)
    clock.advance(10)
    series.record(ok=True, ttft=0.05)
    assert series.as_dict()["requests"] == [0, 1, 1]
    clock.advance(20)
    assert series.as_dict()["requests"] == [1, 0, 0]
    clock.advance(10)
    series.record(ok=True)
    assert series.as_dict() == {"bucket_s": 10, "now": clock.wall(), "age_s": 0.0,
                                "requests": [0, 0, 1], "errors": [0, 0, 0],
                                "ttft_ms": [None, None, None]}


def test_the_buckets_are_placed_on_the_wall_clock() -> None:
    """``now`` is wall time and ``age_s`` how far into the current bucket it is: the start
    of bucket k is ``now - age_s - (n - 1 - k) * bucket_s`` (the timeline draws events)."""
    clock = ManualClock(start=1003.5)
    recent = TrafficSeries(clock, bucket_s=10, buckets=3).as_dict()
    assert recent["now"] == clock.wall() and recent["age_s"] == 3.5
