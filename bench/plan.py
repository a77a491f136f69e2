"""How much the benchmark measures: the full run and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    """Request counts and time caps; every loop is bounded by both."""

    quick: bool
    rounds: int  # interleaved rounds of the overhead figure
    c1_requests: int  # per target, per cell, per round, at concurrency 1
    c32_requests: int  # the same at concurrency 32
    cell_seconds: float  # time cap of one cell for one target in one round
    throughput_rounds: int
    throughput_seconds: float  # how long each throughput run sends
    failover_requests: int  # the "next N requests" after a break
    failover_seconds: float  # time cap of one failover run
    baseline_requests: int  # healthy requests measured before the failover scenarios
    recovery_cap: float  # give up waiting for recovery after this long
    warmup: int  # requests per target and API before anything is measured
    bound: float = 2.0  # first-token bound given to every gateway in the failover figure
    litellm_cooldown: float = 5.0  # LiteLLM's documented default cooldown_time


FULL = Plan(
    quick=False, rounds=5, c1_requests=100, c32_requests=320, cell_seconds=2.5,
    throughput_rounds=3, throughput_seconds=2.0, failover_requests=500, failover_seconds=20.0,
    baseline_requests=100, recovery_cap=30.0, warmup=64,
)
QUICK = Plan(
    quick=True, rounds=3, c1_requests=100, c32_requests=192, cell_seconds=1.0,
    throughput_rounds=1, throughput_seconds=1.5, failover_requests=200, failover_seconds=6.0,
    baseline_requests=40, recovery_cap=15.0, warmup=32,
)
