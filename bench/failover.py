"""Figures 3 and 4: failover when the primary breaks, and recovery when it comes back.

Each gateway gets its own fake Ollama (primary) and fake LM Studio (fallback), and is started
afresh for every scenario: DEMI's breaker remembers recent flaps for ``probe_backoff_max``
(30 s) and would otherwise probe more slowly in every scenario after the first. Per scenario:

1. break the primary; time the first request, then the next N sequential ones;
2. bring the primary back; send one request every 50 ms until one is served by it again;
3. break it again; N requests at concurrency 32 (the first 32 all meet the fresh break);
4. bring it back and wait for recovery again (not reported).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.client import OPENAI, Client, Endpoint, run_count
from bench.plan import Plan
from bench.stats import Dist, Sample, latencies
from bench.targets import UPSTREAM_MODEL, Target
from src.testing.fakes.launcher import FakeServer

Log = Callable[[str], None]
Starter = Callable[[str, str], Awaitable[Target]]  # (ollama_url, lmstudio_url) -> started target

FAKE_ARGS = ["--reply-tokens", "32", "--max-recorded", "2000"]
LMSTUDIO_MODEL = "qwen2.5-7b-instruct"  # the fake LM Studio's default loaded model
SCENARIOS = {
    "a": "primary not listening (killed)",
    "b": "primary accepts, never answers (hang)",
    "c": "primary answers 500 on chat",
}
CHAT_PATHS = frozenset({"/api/chat", "/v1/chat/completions"})
RECOVERY_SPACING = 0.05


@dataclass
class ScenarioResult:
    first: Sample  # the first request after the break
    sequential: list[Sample]
    concurrent: list[Sample]
    recovery: float | None  # seconds after the primary was back; None = not within the cap


@dataclass
class FailoverResult:
    target: str
    healthy: Dist  # the gateway, healthy, sequential
    healthy_c32: Dist
    direct_primary: Dist  # the client straight to the fake Ollama's OpenAI API
    direct_fallback: Dist  # the client straight to the fake LM Studio
    direct_fallback_c32: Dist
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    start_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _break(key: str, primary: FakeServer) -> None:
    if key == "a":
        primary.kill()
    elif key == "b":
        primary.control(mode="hang", routes="all")
    else:
        primary.control(mode="status", status=500, routes="chat")


def _restore(key: str, primary: FakeServer) -> None:
    if key == "a":
        primary.restart()  # same port; a fresh process has an empty request log
    else:
        primary.reset()  # default behaviour, request log cleared


def _served_by_primary(sample: Sample, primary: FakeServer) -> bool:
    """DEMI names the provider in a header; for others, ask the primary what it received."""
    if sample.provider is not None:
        return sample.provider == "ollama"
    return any(r.get("path") in CHAT_PATHS for r in primary.requests())


async def _recovery(client: Client, ep: Endpoint, primary: FakeServer, cap: float) -> float | None:
    start = time.perf_counter()
    while time.perf_counter() - start < cap:
        sample = await client.request(ep, stream=False)
        if sample.ok and _served_by_primary(sample, primary):
            return time.perf_counter() - start
        await asyncio.sleep(RECOVERY_SPACING)
    return None


async def _seq(client: Client, ep: Endpoint, n: int, conc: int, cap: float) -> list[Sample]:
    return await run_count(lambda: client.request(ep, False), n, conc, cap)


async def run_failover(
    client: Client, name: str, start: Starter, plan: Plan, log: Log
) -> FailoverResult:
    primary = FakeServer("ollama", args=FAKE_ARGS).start()
    fallback = FakeServer("lmstudio", args=FAKE_ARGS).start()
    target: Target | None = None
    try:
        n, cap = plan.failover_requests, plan.failover_seconds
        direct_p = Endpoint(f"{primary.url}/v1/chat/completions", UPSTREAM_MODEL, OPENAI)
        direct_f = Endpoint(f"{fallback.url}/v1/chat/completions", LMSTUDIO_MODEL, OPENAI)
        log(f"figure 3: {name} baseline")
        target = await start(primary.url, fallback.url)
        starts = list(target.start_seconds)
        ep = target.endpoints[OPENAI]
        base = plan.baseline_requests
        for e in (direct_p, direct_f, ep):
            await _seq(client, e, plan.warmup, 8, 30.0)
        result = FailoverResult(
            target=name,
            healthy=Dist.of(latencies(await _seq(client, ep, base, 1, cap))),
            healthy_c32=Dist.of(latencies(await _seq(client, ep, base * 4, 32, cap))),
            direct_primary=Dist.of(latencies(await _seq(client, direct_p, base, 1, cap))),
            direct_fallback=Dist.of(latencies(await _seq(client, direct_f, base, 1, cap))),
            direct_fallback_c32=Dist.of(
                latencies(await _seq(client, direct_f, base * 4, 32, cap))
            ),
        )
        for key, what in SCENARIOS.items():
            if key != "a":  # a fresh gateway per scenario (see the module docstring)
                target.stop()
                target = await start(primary.url, fallback.url)
                starts += target.start_seconds
                ep = target.endpoints[OPENAI]
                await _seq(client, ep, plan.warmup, 8, 30.0)
            log(f"figure 3: {name} ({key}) {what}")
            _break(key, primary)
            first = await client.request(ep, stream=False)
            sequential = await _seq(client, ep, n, 1, cap)
            _restore(key, primary)
            recovery = await _recovery(client, ep, primary, plan.recovery_cap)
            _break(key, primary)
            concurrent = await _seq(client, ep, n, 32, cap)
            _restore(key, primary)
            if await _recovery(client, ep, primary, plan.recovery_cap) is None:
                result.notes.append(f"{name} had not recovered from ({key}) under load")
            result.scenarios[key] = ScenarioResult(first, sequential, concurrent, recovery)
        result.start_seconds = starts
        return result
    finally:
        if target is not None:
            target.stop()
        primary.stop()
        fallback.stop()
