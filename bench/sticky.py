"""Sticky conversations on real engines: TTFT of a growing conversation's turns.

Two ``llama_cpp.server`` processes serve the Gemma 3 270M GGUF (vicuna chat format, as
PROTOCOLS.md says) as two ``kind: openai`` providers under ``round_robin``. One
conversation grows turn by turn; each turn's time to first token is measured through
:class:`UnifiedLLMInference`, with ``sticky`` on and off. llama-cpp-python keeps the tokens
of the last request it served and reuses their common prefix, so a turn that lands on the
server that served the previous turn only reads the new messages; without sticky,
round-robin sends turn k to the server that last saw turn k-2.

    python -m bench.sticky [--runs 3] [--turns 6] [--out bench/results/sticky.md]

Numbers depend on the machine and on what else runs on it; they are a measurement, not a
test (nothing here asserts a speed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from src.llm.inference import UnifiedLLMInference
from src.llm.providers.gguf import resolve_model_file
from src.testing.fakes.launcher import free_port

# About 120 tokens of plain prose per user turn, so re-reading the conversation costs.
PARAGRAPH = (
    "Conversation {run}, turn {turn}. Here is some background about the garden at the "
    "end of our street. The path runs "
    "past a row of old apple trees, a small pond with reeds and a bench where people sit "
    "in the afternoon. In spring the beds fill with tulips and in autumn the leaves pile "
    "up along the wall. The gardener comes on Tuesdays and Fridays, waters the roses, "
    "trims the hedge and talks to the children who feed the ducks. Question {run}.{turn}: "
    "what should we plant next to the bench this year?"
)


@contextlib.contextmanager
def llama_servers(count: int, threads: int, n_ctx: int) -> Iterator[list[str]]:
    """``count`` llama_cpp.server processes on free ports; stopped on every path."""
    model = resolve_model_file(None, None)
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for _ in range(count):
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                 "--host", "127.0.0.1", "--port", str(port), "--chat_format", "vicuna",
                 "--model_alias", "gemma", "--n_ctx", str(n_ctx),
                 "--n_threads", str(threads), "--verbose", "False"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            ))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            _wait_ready(proc, url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server at {url} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server at {url} did not answer within {within:g} s")


def config(urls: list[str], sticky: bool) -> dict[str, Any]:
    names = [f"engine{i}" for i in range(len(urls))]
    return {"llm": {
        "provider": names[0], "order": names,
        "embedded": {"enabled": False},
        "routing": {"strategy": "round_robin", "sticky": sticky},
        "providers": [{"name": n, "kind": "openai", "base_url": u, "model": "gemma",
                       "timeout": 120, "context_window": 2048}
                      for n, u in zip(names, urls, strict=True)],
    }}


async def conversation(llm: UnifiedLLMInference, run: int, turns: int,
                       ) -> list[tuple[str, float]]:
    """(serving provider, TTFT seconds) of each turn of one fresh conversation."""
    msgs: list[dict[str, Any]] = []
    out = []
    for turn in range(1, turns + 1):
        msgs.append({"role": "user", "content": PARAGRAPH.format(run=run, turn=turn)})
        reply = await llm.chat_detailed(msgs, max_tokens=16, stop=["USER:"], temperature=0)
        out.append((reply.provider, reply.time_to_first_token or reply.latency))
        msgs.append({"role": "assistant", "content": reply.text or "ok"})
    return out


async def measure(urls: list[str], sticky: bool, runs: int, turns: int,
                  first_run: int) -> list[list[tuple[str, float]]]:
    async with UnifiedLLMInference(config(urls, sticky), logging.getLogger("bench")) as llm:
        return [await conversation(llm, first_run + r, turns) for r in range(runs)]


def report(results: dict[bool, list[list[tuple[str, float]]]], turns: int, args: Any) -> str:
    lines = [
        "# Sticky conversations on real engines",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other work); "
        f"command: `python -m bench.sticky --runs {args.runs} --turns {turns} "
        f"--threads {args.threads}`.",
        "",
        "Two `llama_cpp.server` processes, Gemma 3 270M Q4_K_M, vicuna chat format, "
        f"`--n_threads {args.threads}`, as two `kind: openai` providers under `round_robin`. "
        "One conversation at a time, ~120-token user turns, replies capped at 16 tokens; "
        "the runs of the two modes alternate. TTFT in ms through `UnifiedLLMInference`.",
        "",
        "| turn | " + " | ".join(f"sticky {'on' if s else 'off'}: median / min (each run)"
                                   for s in (True, False)) + " |",
        "|---|---|---|",
    ]
    for t in range(turns):
        cells = []
        for sticky in (True, False):
            samples = [run[t][1] * 1000 for run in results[sticky]]
            cells.append(f"{statistics.median(samples):.0f} / {min(samples):.0f} "
                         f"({', '.join(f'{x:.0f}' for x in samples)})")
        lines.append(f"| {t + 1} | " + " | ".join(cells) + " |")
    lines.append("")
    for sticky in (True, False):
        where = [" ".join(p[-1] for p, _ in run) for run in results[sticky]]
        lines.append(f"Serving engine per turn, sticky {'on' if sticky else 'off'}: "
                     + "; ".join(where) + " (0/1 = engine0/engine1).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sticky")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/sticky.md")
    args = parser.parse_args(argv)
    results: dict[bool, list[list[tuple[str, float]]]] = {True: [], False: []}
    with llama_servers(2, args.threads, 2048) as urls:
        for r in range(args.runs):
            for sticky in (True, False):  # alternate so drift lands on both modes
                results[sticky] += asyncio.run(
                    measure(urls, sticky, 1, args.turns, first_run=2 * r + sticky))
    text = report(results, args.turns, args)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
