"""Figures 1 and 2: overhead over direct, and CPU per request and throughput.

Interleaved rounds: every round measures each cell on every target one after the other, so
slow drift of the machine (other load, thermal, caches) lands on all targets alike. Samples
are pooled over the rounds before percentiles are taken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from bench.client import ANTHROPIC, OLLAMA, OPENAI, RESPONSES, Client, run_count, run_for
from bench.plan import Plan
from bench.stats import Sample
from bench.targets import Target

Log = Callable[[str], None]
_API_NAMES = {OPENAI: ("OpenAI", "SSE"), OLLAMA: ("Ollama", "NDJSON"),
              ANTHROPIC: ("Anthropic", "SSE"), RESPONSES: ("Responses", "SSE")}


@dataclass(frozen=True, slots=True)
class Cell:
    api: str
    stream: bool
    concurrency: int

    @property
    def label(self) -> str:
        api, streamed = _API_NAMES[self.api]
        return f"{api} {streamed if self.stream else 'JSON'} c{self.concurrency}"

    @property
    def direct(self) -> Cell:
        """The cell of the direct target this one is measured against. The fakes speak
        neither Anthropic nor Responses: DEMI's Anthropic face, in front of Ollama's
        ``/api/chat``, is measured against the client talking to that ``/api/chat`` itself,
        and its Responses face against direct Chat Completions."""
        if self.api == ANTHROPIC:
            return Cell(OLLAMA, self.stream, self.concurrency)
        if self.api == RESPONSES:
            return Cell(OPENAI, self.stream, self.concurrency)
        return self

    @property
    def baseline(self) -> Cell:
        """The direct cell a gateway's overhead is taken over: the same cell, or for a face
        no upstream speaks (Responses) the Chat Completions cell it is translated onto."""
        return Cell(OPENAI, self.stream, self.concurrency) if self.api == RESPONSES else self


OVERHEAD_CELLS = tuple(
    Cell(api, stream, c)
    for api in (OPENAI, RESPONSES, OLLAMA, ANTHROPIC) for stream in (False, True)
    for c in (1, 32)
)
THROUGHPUT_CELLS = tuple(Cell(OPENAI, stream, c) for stream in (False, True) for c in (32, 128))


@dataclass
class Throughput:
    """Pooled over rounds: completed requests, seconds spent, gateway CPU seconds."""

    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu: float | None = 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu is None or not self.ok:
            return None
        return self.cpu * 1000.0 / self.ok


@dataclass
class Results:
    overhead: dict[tuple[Cell, str], list[Sample]] = field(
        default_factory=lambda: defaultdict(list)
    )
    throughput: dict[tuple[Cell, str], Throughput] = field(default_factory=dict)


async def warm_up(client: Client, targets: Sequence[Target], count: int) -> None:
    """Open pooled connections and run every code path once before measuring."""
    for target in targets:
        for ep in target.endpoints.values():
            for stream in (False, True):
                await run_count(partial(client.request, ep, stream), count, 32, 30.0)


async def measure_overhead(
    client: Client, targets: Sequence[Target], plan: Plan, results: Results, log: Log
) -> None:
    for rnd in range(plan.rounds):
        log(f"figure 1: round {rnd + 1}/{plan.rounds}")
        for cell in OVERHEAD_CELLS:
            count = plan.c1_requests if cell.concurrency == 1 else plan.c32_requests
            for target in targets:
                ep = target.endpoint(cell.api)
                if ep is None:
                    continue
                samples = await run_count(
                    partial(client.request, ep, cell.stream),
                    count, cell.concurrency, plan.cell_seconds,
                )
                results.overhead[(cell, target.name)].extend(samples)


async def measure_throughput(
    client: Client, targets: Sequence[Target], plan: Plan, results: Results, log: Log
) -> None:
    for rnd in range(plan.throughput_rounds):
        log(f"figure 2: round {rnd + 1}/{plan.throughput_rounds}")
        for cell in THROUGHPUT_CELLS:
            for target in targets:
                ep = target.endpoint(cell.api)
                if ep is None:
                    continue
                proc = target.proc
                cpu_before = proc.cpu_seconds() if proc is not None else None
                samples, elapsed = await run_for(
                    partial(client.request, ep, cell.stream),
                    cell.concurrency, plan.throughput_seconds,
                )
                acc = results.throughput.setdefault((cell, target.name), Throughput())
                ok = sum(1 for s in samples if s.ok)
                acc.ok += ok
                acc.failed += len(samples) - ok
                acc.seconds += elapsed
                if proc is None or cpu_before is None or acc.cpu is None:
                    acc.cpu = None
                else:
                    acc.cpu += proc.cpu_seconds() - cpu_before
