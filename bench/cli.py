"""``python -m bench`` options and exit codes.

Exit 0 when every figure was produced (the numbers themselves never fail the run); 1 when a
target failed to start or a figure could not be produced, with a message on stderr saying
which; 130 on Ctrl-C. Every process the bench started is stopped on every path.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench import embedded
from bench.procs import REPO_ROOT, TargetFailed
from bench.report import build_table
from bench.runner import Bench, Options, document, log, missing, notes_for

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "latest.md"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="DEMI's benchmark: direct vs floor vs DEMI (vs LiteLLM) on loopback.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests and rounds: under 2 minutes on 2 cores")
    parser.add_argument("--no-litellm", action="store_true", help="leave the LiteLLM peer out")
    parser.add_argument("--litellm-python", metavar="PATH",
                        help="interpreter that has litellm[proxy] (default: this one, if it has)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="PATH",
                        help="where the report goes (default: bench/results/latest.md)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the benchmark, profile DEMI under load with py-spy "
                        "(or pyinstrument) and summarise where its time goes")
    parser.add_argument("--profile-seconds", type=float, default=15.0, metavar="S",
                        help="how long --profile samples (default 15)")
    parser.add_argument("--profile-concurrency", type=int, default=32, metavar="N",
                        help="concurrent requests during --profile (default 32)")
    parser.add_argument("--py-spy", metavar="PATH", help="py-spy executable for --profile")
    parser.add_argument("--no-embedded", action="store_true",
                        help="leave figure 6 (the embedded engine) out")
    parser.add_argument("--embedded-only", action="store_true",
                        help="only figure 6 (the embedded engine): about 30 s")
    return parser.parse_args(argv)


async def _embedded_section(enabled: bool) -> str:
    """Figure 6 as markdown, or a note saying why it was left out."""
    if not enabled:
        return "Figure 6 (the embedded engine) left out with --no-embedded.\n"
    ok, why = embedded.available()
    if not ok:
        return f"Figure 6 (the embedded engine) skipped: {why}\n"
    with tempfile.TemporaryDirectory(prefix="demi-bench-embedded-") as workdir:
        return embedded.render(await embedded.measure(Path(workdir), log))


async def _bench(opts: Options, with_embedded: bool, embedded_only: bool) -> int:
    started = time.perf_counter()
    if embedded_only:
        text = await _embedded_section(True)
        print(text)
        out = opts.output.with_name("embedded.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"written to {out}")
        return 0
    bench = Bench(opts)
    try:
        inp = await bench.run()
    finally:
        await bench.close()
    gaps = missing(inp)
    table = build_table(inp)
    text = document(opts, inp, table, time.perf_counter() - started, notes_for(inp, bench))
    text += "\n" + await _embedded_section(with_embedded)
    print(text)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text)
    log(f"written to {opts.output}")
    if gaps:
        for gap in gaps:
            print(f"error: {gap}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = parse(args_list)
    try:
        if args.profile:
            from bench.profiling import profile

            return asyncio.run(profile(args.profile_seconds, args.profile_concurrency, args.py_spy))
        opts = Options(args.quick, args.no_litellm, args.litellm_python, args.output, args_list)
        return asyncio.run(_bench(opts, not args.no_embedded, args.embedded_only))
    except TargetFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
