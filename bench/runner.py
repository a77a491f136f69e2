"""The benchmark from start to finish: start everything, measure, stop everything, report."""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench import litellm_peer, machine, targets
from bench.client import Client
from bench.failover import FAKE_ARGS, LMSTUDIO_MODEL, FailoverResult, Starter, run_failover
from bench.figures import (
    OVERHEAD_CELLS,
    THROUGHPUT_CELLS,
    Results,
    measure_overhead,
    measure_throughput,
    warm_up,
)
from bench.plan import FULL, QUICK, Plan
from bench.procs import REPO_ROOT, PeakRss
from bench.report import Inputs
from bench.targets import DEMI, DIRECT, FLOOR, LITELLM, Target
from src.testing.fakes.launcher import FakeServer

FAILOVER_CONFIG = Path(__file__).with_name("demi-failover.yaml")


@dataclass(frozen=True)
class Options:
    quick: bool
    no_litellm: bool
    litellm_python: str | None
    output: Path
    argv: list[str]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def failover_bound() -> float:
    """The first-token bound the failover config gives DEMI (and so every gateway)."""
    cfg = yaml.safe_load(FAILOVER_CONFIG.read_text())
    return float(cfg["llm"]["ollama"]["timeout"])


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.plan: Plan = QUICK if opts.quick else FULL
        self.workdir = Path(tempfile.mkdtemp(prefix="demi-bench-"))
        self.client = Client()
        self.rss = PeakRss()
        self.bound = failover_bound()
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.litellm_python: str | None = None
        if opts.no_litellm:
            self.skipped[LITELLM] = "skipped with --no-litellm"
        else:
            self.litellm_python, why = litellm_peer.find_python(opts.litellm_python)
            if self.litellm_python is None:
                self.skipped[LITELLM] = f"skipped: {why}"

    async def run(self) -> Inputs:
        plan = self.plan
        results = Results()
        starts: dict[str, list[float]] = {}
        live: list[Target] = []
        fakes = [FakeServer(kind, args=FAKE_ARGS) for kind in ("ollama", "lmstudio")]
        self.rss.start()
        try:
            for fake in fakes:
                fake.start()
            ollama, lmstudio = (f.url for f in fakes)
            log("starting floor, DEMI" + ("" if self.litellm_python is None else ", LiteLLM"))
            live.append(targets.direct(ollama))
            live.append(await targets.floor(self.client, ollama, self.workdir))
            live.append(await targets.demi(self.client, ollama, lmstudio, self.workdir))
            if self.litellm_python is not None:
                live.append(await self._litellm(ollama, lmstudio))
            for t in live:
                self.notes += t.notes
                if t.proc is not None:
                    self.rss.watch(t.name, t.proc)
            log("warming up")
            await warm_up(self.client, live, plan.warmup)
            await measure_overhead(self.client, live, plan, results, log)
            await measure_throughput(self.client, live, plan, results, log)
            for t in live:
                starts[t.name] = list(t.start_seconds)
        finally:
            self.rss.stop()
            for t in live:
                t.stop()
            for fake in fakes:
                fake.stop()
        failover = await self._failover(starts)
        return Inputs(plan, [t.name for t in live], results, failover, dict(self.rss.peak),
                      starts, self.bound, dict(self.skipped))

    async def _litellm(self, ollama: str, lmstudio: str) -> Target:
        assert self.litellm_python is not None
        return await litellm_peer.litellm(
            self.client, self.litellm_python, ollama, lmstudio, LMSTUDIO_MODEL, self.workdir,
            bound=self.bound, cooldown=self.plan.litellm_cooldown,
        )

    async def _failover(self, starts: dict[str, list[float]]) -> dict[str, FailoverResult]:
        async def start_demi(ollama: str, lmstudio: str) -> Target:
            return await targets.demi(self.client, ollama, lmstudio, self.workdir,
                                      config=FAILOVER_CONFIG)

        runs: dict[str, Starter] = {DEMI: start_demi}
        if self.litellm_python is not None:
            runs[LITELLM] = self._litellm
        out: dict[str, FailoverResult] = {}
        for name, start in runs.items():
            res = await run_failover(self.client, name, start, self.plan, log)
            out[name] = res
            starts.setdefault(name, []).extend(res.start_seconds)
            self.notes += res.notes
        return out

    async def close(self) -> None:
        await self.client.close()


def missing(inp: Inputs) -> list[str]:
    """Figures that could not be produced (each a reason); empty when the table is complete."""
    out: list[str] = []
    for name in (DIRECT, FLOOR, DEMI):
        for cell in OVERHEAD_CELLS:
            if cell.direct != cell and name != DEMI:
                continue  # a face only DEMI serves (its overhead is over direct chat)
            if not any(s.ok for s in inp.results.overhead.get((cell, name), [])):
                out.append(f"figure 1: no successful {cell.label} request through {name}")
        for cell in THROUGHPUT_CELLS:
            acc = inp.results.throughput.get((cell, name))
            if acc is None or not acc.ok:
                out.append(f"figure 2: no successful {cell.label} request through {name}")
    if DEMI not in inp.failover:
        out.append("figures 3-4: DEMI's failover was not measured")
    for name in (FLOOR, DEMI):
        if name not in inp.peak_rss:
            out.append(f"figure 5: no RSS sample of {name}")
        if not inp.starts.get(name):
            out.append(f"figure 5: no start time of {name}")
    return out


def document(opts: Options, inp: Inputs, table: str, seconds: float, notes: list[str]) -> str:
    plan = inp.plan
    command = shlex.join(["python", "-m", "bench", *opts.argv])
    lines = [
        f"# DEMI benchmark{' (quick)' if plan.quick else ''}",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- Machine: {machine.describe()}",
        f"- Command: `{command}` (interpreter {sys.executable}, cwd {REPO_ROOT})",
        f"- Duration: {seconds:.0f} s",
        "",
        table,
        "",
        "Notes:",
        "",
        *[f"- {n}" for n in notes],
    ]
    return "\n".join(lines) + "\n"


def notes_for(inp: Inputs, bench: Bench) -> list[str]:
    p = inp.plan
    out = [
        "direct = the client straight to the fake Ollama (its `/api/chat` and its OpenAI "
        "`/v1/chat/completions`), 32-token replies, zero think time: absolute values. "
        "Fig. 1 gateway columns: overhead = gateway percentile − direct percentile of the same "
        "cell; ratio = gateway overhead ÷ floor overhead. The Responses rows are DEMI's "
        "`/v1/responses` face (`store: false`), which no upstream speaks: their overhead is over "
        "direct's Chat Completions cell of the same mode, the chat the face is translated onto.",
        f"Fig. 1: {p.rounds} interleaved rounds; per round, cell and target {p.c1_requests} "
        f"requests at c1 or {p.c32_requests} at c32, each capped at {p.cell_seconds:g} s; "
        "samples pooled over rounds. TTFT = time to the first chunk carrying text.",
        f"Fig. 2: {p.throughput_rounds} round(s) of {p.throughput_seconds:g} s closed-loop load "
        "per cell and target; CPU = user+system of the gateway process (psutil cpu_times "
        "before/after) ÷ completed requests.",
        f"Fig. 3-4: each gateway gets its own fakes and is restarted per scenario; first-token "
        f"bound {inp.bound:g} s for every gateway (DEMI: DEMI_CONFIG={FAILOVER_CONFIG.name}, "
        "everything else at its defaults). 'added' = first request − the gateway's healthy p50; "
        "'normal ovh' = healthy p50 − direct-to-primary p50, compared with "
        "(failover p50 − direct-to-fallback p50). Recovery: one request every 50 ms after the "
        "primary is back (restarted / reset) until one is served by it (DEMI: X-DEMI-Provider; "
        "LiteLLM: the primary's request log). (c) breaks only the chat routes: health checks "
        "still pass.",
        "Fig. 5: RSS of the gateway process tree sampled every 50 ms during figures 1-2; start "
        "= process spawn → first successful chat reply (DEMI with the embedded model off).",
        "Goals are DEMI's; 'Met' compares DEMI with them. Numbers are for people, not "
        f"pass/fail. With {p.rounds * p.c1_requests} samples per c1 cell, a p99 rests on the "
        f"worst {max(1, p.rounds * p.c1_requests // 100)} request(s): a ratio of two p99 "
        "overheads is noisy.",
    ]
    if bench.litellm_python is not None:
        settings = litellm_peer.settings(inp.bound, p.litellm_cooldown)
        out.append(
            f"LiteLLM ({bench.litellm_python}): one worker, callbacks off, spend/error logs off, "
            f"no master key, `ollama_chat/` → `openai/` models with timeout = stream_timeout = "
            f"{inp.bound:g} s; router_settings {settings}."
        )
    out += [f"LiteLLM {why}" for n, why in inp.skipped.items() if n == LITELLM]
    out += bench.notes
    return out
