"""The one table: every figure as rows, one column per target, ratios and goals beside them.

Conventions (also in bench/README.md): the ``direct`` column holds absolute values (the
baseline); gateway columns of figure 1 hold overhead over direct (target percentile minus
direct percentile, same cell); ratio columns divide a gateway's figure by the floor's, or by
the quantity named in the cell. Goals are DEMI's; "met" compares DEMI's ratio with its goal.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.client import OLLAMA, OPENAI
from bench.failover import SCENARIOS, FailoverResult
from bench.figures import OVERHEAD_CELLS, THROUGHPUT_CELLS, Cell, Results
from bench.plan import Plan
from bench.stats import Dist, Sample, errors, latencies, percentile, ttfts
from bench.table import ms, ratio, render, safe_div
from bench.targets import DEMI, DIRECT, FLOOR, LITELLM

GATEWAYS = (DEMI, LITELLM)
HEADER = ("Fig", "Measure", "direct", "floor", "DEMI", "LiteLLM", "DEMI ratio",
          "LiteLLM ratio", "Goal (DEMI)", "Met")


@dataclass
class Inputs:
    plan: Plan
    measured: list[str]  # target names present in figures 1, 2 and 5
    results: Results
    failover: dict[str, FailoverResult]
    peak_rss: dict[str, int]
    starts: dict[str, list[float]]
    bound: float
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why it is absent


Row = list[str]


class Builder:
    def __init__(self, inp: Inputs) -> None:
        self.inp = inp
        self.rows: list[Row] = []

    def absent(self, name: str) -> str:
        return "skipped" if name in self.inp.skipped else "n/a"

    def add(self, fig: str, measure: str, values: dict[str, str], ratios: dict[str, str],
            goal: str = "—", met: bool | None = None) -> None:
        cells = [values.get(n, self.absent(n)) for n in (DIRECT, FLOOR, DEMI, LITELLM)]
        rat = [ratios.get(n, "—") for n in GATEWAYS]
        self.rows.append([fig, measure, *cells, *rat, goal,
                          "" if met is None else "yes" if met else "no"])

    # -- figure 1 ------------------------------------------------------------------------
    def overhead(self) -> None:
        for cell in OVERHEAD_CELLS:
            what = "TTFT" if cell.stream else "latency"
            for q, limit in ((50, 1.5), (99, 2.0)):
                _, values, over = self._overheads(cell, q)
                if cell.direct != cell:  # a face only DEMI serves: beside its OpenAI face
                    openai = self._overheads(Cell(OPENAI, cell.stream, cell.concurrency), q)[2]
                    r = safe_div(over.get(DEMI, float("nan")), openai.get(DEMI, float("nan")))
                    versus = "direct Ollama" if cell.direct.api == OLLAMA else "direct chat"
                    self.add("1", f"{cell.label} {what} p{q}, overhead ms (vs {versus})",
                             values, {DEMI: ratio(r, "OpenAI face")} if DEMI in over else {})
                    continue
                ratios, met = self._vs_floor(over, limit, lower_is_better=True)
                self.add("1", f"{cell.label} {what} p{q}, overhead ms", values,
                         ratios, f"≤ {limit:g}× floor" if FLOOR in over else "—", met)

    def _overheads(self, cell: Cell, q: int) -> tuple[float, dict[str, str], dict[str, float]]:
        """(direct's percentile ms, the cells' texts, each target's overhead ms) of one row."""
        ov = self.inp.results.overhead
        pick = ttfts if cell.stream else latencies
        base = ov.get((cell.direct, DIRECT), [])
        direct_ms = percentile(pick(base), q) * 1000
        values = {DIRECT: ms(direct_ms) + _errs(base)}
        over: dict[str, float] = {}
        for name in (FLOOR, *GATEWAYS):
            samples = ov.get((cell, name))
            if not samples:
                continue
            over[name] = percentile(pick(samples), q) * 1000 - direct_ms
            values[name] = ms(over[name], signed=True) + _errs(samples)
        return direct_ms, values, over

    def _vs_floor(self, values: dict[str, float], limit: float | None,
                  lower_is_better: bool) -> tuple[dict[str, str], bool | None]:
        floor = values.get(FLOOR)
        ratios: dict[str, str] = {}
        met: bool | None = None
        for name in GATEWAYS:
            if name in values and floor is not None:
                r = safe_div(values[name], floor)
                ratios[name] = ratio(r, "floor")
                if name == DEMI and r is not None and limit is not None:
                    met = r <= limit if lower_is_better else r >= limit
        return ratios, met

    # -- figure 2 ------------------------------------------------------------------------
    def throughput(self) -> None:
        tp = self.inp.results.throughput
        for cell in THROUGHPUT_CELLS:
            cpu: dict[str, float] = {}
            rps: dict[str, float] = {}
            cpu_txt: dict[str, str] = {DIRECT: "n/a (no gateway)"}
            rps_txt: dict[str, str] = {}
            for name in self.inp.measured:
                acc = tp.get((cell, name))
                if acc is None:
                    continue
                err = f" ({acc.failed} err)" if acc.failed else ""
                rps[name] = acc.rps
                rps_txt[name] = f"{acc.rps:.0f}{err}"
                per = acc.cpu_ms_per_request
                if per is not None:
                    cpu[name] = per
                    cpu_txt[name] = f"{per:.2f}"
            ratios, met = self._vs_floor(cpu, 2.0, lower_is_better=True)
            self.add("2", f"{cell.label} gateway CPU ms/request", cpu_txt, ratios,
                     "≤ 2× floor", met)
            limit = 0.6 if cell.concurrency == 32 else None
            ratios, met = self._vs_floor(rps, limit, lower_is_better=False)
            self.add("2", f"{cell.label} requests/s", rps_txt, ratios,
                     "≥ 0.6× floor" if limit else "—", met)

    # -- figures 3 and 4 -----------------------------------------------------------------
    def failover(self) -> None:
        fo = self.inp.failover
        bound_ms = self.inp.bound * 1000
        ref = next(iter(fo.values()), None)
        n = self.inp.plan.failover_requests
        for key, what in SCENARIOS.items():
            fig = f"3{key}"
            firsts: dict[str, str] = {}
            seqs: dict[str, str] = {}
            concs: dict[str, str] = {}
            r_first: dict[str, str] = {}
            r_seq: dict[str, str] = {}
            r_conc: dict[str, str] = {}
            met_first = met_seq = met_conc = None
            for name, res in fo.items():
                sc = res.scenarios[key]
                added = sc.first.latency * 1000 - res.healthy.p50
                firsts[name] = f"{ms(added, signed=True)} ({ms(sc.first.latency * 1000)} ms)" \
                    + ("" if sc.first.ok else " failed")
                seq = Dist.of(latencies(sc.sequential))
                seqs[name] = f"{ms(seq.p50)} / {ms(seq.p99)} / {ms(seq.max)}" \
                    + _errs(sc.sequential)
                conc = Dist.of(latencies(sc.concurrent))
                concs[name] = f"{ms(conc.p50)} / {ms(conc.p99)} / {ms(conc.max)}" \
                    + _errs(sc.concurrent)
                normal = res.healthy.p50 - res.direct_primary.p50
                over = safe_div(seq.p50 - res.direct_fallback.p50, normal)
                r_seq[name] = ratio(over, "normal ovh")
                if key == "b":
                    r_first[name] = ratio(sc.first.latency * 1000 / bound_ms, "bound")
                    r_conc[name] = ratio(conc.max / bound_ms, "bound (max)")
                else:
                    r_conc[name] = ratio(safe_div(conc.p50, res.healthy_c32.p50),
                                         "healthy c32 p50")
                if name == DEMI:
                    met_seq = over is not None and over <= 1.0 and not errors(sc.sequential)
                    if key == "b":
                        met_first = added - bound_ms <= 5.0
                        met_conc = (conc.max <= bound_ms + res.healthy_c32.max
                                    and not errors(sc.concurrent))
                    else:
                        met_first = sc.first.ok and added <= 5.0
            if ref is not None:
                for v in (firsts, seqs, concs):
                    v[FLOOR] = "n/a (no failover)"
                fb, fb32 = ref.direct_fallback, ref.direct_fallback_c32
                seqs[DIRECT] = f"{ms(fb.p50)} / {ms(fb.p99)} / {ms(fb.max)} (to fallback)"
                concs[DIRECT] = f"{ms(fb32.p50)} / {ms(fb32.p99)} / {ms(fb32.max)} (to fallback)"
                firsts[DIRECT] = "n/a"
            first_goal = "≤ +bound +5 ms" if key == "b" else "≤ +5 ms"
            self.add(fig, f"({key}) {what}: first request, added ms (total)", firsts, r_first,
                     first_goal, met_first)
            self.add(fig, f"({key}) next {n} sequential: p50 / p99 / max ms", seqs, r_seq,
                     "≤ 1× normal ovh", met_seq)
            conc_goal = "max ≤ bound + worst healthy c32" if key == "b" else "—"
            self.add(fig, f"({key}) {n} at c32: p50 / p99 / max ms", concs, r_conc, conc_goal,
                     met_conc if key == "b" else None)
        for key in SCENARIOS:
            values: dict[str, str] = {}
            met = None
            for name, res in fo.items():
                rec = res.scenarios[key].recovery
                cap = self.inp.plan.recovery_cap
                values[name] = f"{rec:.2f} s" if rec is not None else f"> {cap:g} s"
                if name == DEMI and key != "c":
                    met = rec is not None and rec <= 2.0
            if fo:
                values[DIRECT] = values[FLOOR] = "n/a"
            self.add("4", f"recovery after ({key}): s until the primary serves again", values,
                     {}, "≤ 2 s" if key != "c" else "—", met)

    # -- figure 5 ------------------------------------------------------------------------
    def footprint(self) -> None:
        rss = {n: v / 2**20 for n, v in self.inp.peak_rss.items()}
        txt = {n: f"{v:.1f}" for n, v in rss.items()}
        txt[DIRECT] = "n/a"
        ratios = {n: ratio(safe_div(rss[n], rss[FLOOR]), "floor")
                  for n in GATEWAYS if n in rss and FLOOR in rss}
        met = rss[DEMI] <= 60 if DEMI in rss else None
        self.add("5", "peak RSS under load, MB", txt, ratios, "≤ 60 MB", met)
        starts = {n: v for n, v in self.inp.starts.items() if v}
        txt = {n: f"{statistics.median(v):.2f} s (max {max(v):.2f}, n={len(v)})"
               for n, v in starts.items()}
        txt[DIRECT] = "n/a"
        med = {n: statistics.median(v) for n, v in starts.items()}
        ratios = {n: ratio(safe_div(med[n], med[FLOOR]), "floor")
                  for n in GATEWAYS if n in med and FLOOR in med}
        met = med[DEMI] <= 1.0 if DEMI in med else None
        self.add("5", "process start → first answer (median)", txt, ratios, "≤ 1 s", met)


def _errs(samples: Sequence[Sample]) -> str:
    bad = errors(samples)
    return f" ({len(bad)} err)" if bad else ""


def build_table(inp: Inputs) -> str:
    b = Builder(inp)
    steps: list[Callable[[], None]] = [b.overhead, b.throughput, b.failover, b.footprint]
    for step in steps:
        step()
    return render(HEADER, b.rows)
