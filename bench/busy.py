"""Busy servers on real engines: no caps vs caps with spillover vs ``least_busy``.

Two ``llama_cpp.server`` processes (llama-cpp-python at its default settings, the Gemma 3
270M GGUF, one thread each) serve as LM Studio and as one ``kind: openai`` provider; Ollama
is down. Each configuration gets ``--bursts`` bursts of 8 concurrent streamed chats of 64
tokens, through :class:`UnifiedLLMInference`, and reports p50 / p95 time to first token and
to completion, and how many replies failed. Then an overload run: 32 at once against the
two servers with ``max_concurrency: 1`` each and ``llm.queue.max_waiting: 4``: how many
were refused, what ``retry_after`` said, and whether one retry after it succeeded.

    python -m bench.busy [--bursts 3] [--out bench/results/busy.md]

A measurement, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from bench.sticky import llama_servers
from src.llm import DemiError, Overloaded
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "busy.md"
PROMPT = "Write a short story about a lighthouse keeper (request {i})."


def config(urls: list[str], *, caps: int | None, strategy: str,
           max_waiting: int = 64) -> dict[str, Any]:
    lmstudio, box = urls
    return {"llm": {
        "ollama": {"base_url": f"http://127.0.0.1:{free_port()}"},
        "lmstudio": {"base_url": lmstudio, "model": "gemma", "timeout": 120,
                     "max_concurrency": caps},
        "providers": [{"name": "box", "kind": "openai", "base_url": box, "model": "gemma",
                       "timeout": 120, "max_concurrency": caps}],
        "order": ["ollama", "lmstudio", "box"],
        "embedded": {"enabled": False}, "discover": False,
        "routing": {"strategy": strategy, "sticky": False},
        "queue": {"max_wait": 120, "max_waiting": max_waiting},
    }}


async def one(llm: UnifiedLLMInference, i: int) -> tuple[float | None, float | None, str]:
    """(seconds to first token, seconds to the end, outcome) of one streamed chat."""
    t0 = time.perf_counter()
    first: float | None = None
    try:
        async for piece in llm.stream_chat([{"role": "user", "content": PROMPT.format(i=i)}],
                                           max_tokens=64, stop=["USER:"], temperature=0):
            if first is None and piece:
                first = time.perf_counter() - t0
    except DemiError as exc:
        return first, None, type(exc).__name__
    return first, time.perf_counter() - t0, "ok"


def _p(values: list[float], q: float) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]:.2f}"


async def bursts(urls: list[str], label: str, caps: int | None, strategy: str,
                 count: int) -> str:
    results: list[tuple[float | None, float | None, str]] = []
    async with UnifiedLLMInference(config(urls, caps=caps, strategy=strategy),
                                   logging.getLogger("bench")) as llm:
        await llm.chat([{"role": "user", "content": "warm up"}], max_tokens=4)
        for b in range(count):
            results += await asyncio.gather(*(one(llm, b * 8 + i) for i in range(8)))
        served = {n: llm.provider_status(n)["stats"]["successes"] for n in ("lmstudio", "box")}
    ttft = [r[0] for r in results if r[0] is not None and r[2] == "ok"]
    total = [r[1] for r in results if r[1] is not None]
    failed = sum(1 for r in results if r[2] != "ok")
    return (f"| {label} | {len(results)} | {failed} | {_p(ttft, 0.5)} | {_p(ttft, 0.95)} | "
            f"{_p(total, 0.5)} | {_p(total, 0.95)} | {served['lmstudio']} / {served['box']} |")


async def overload(urls: list[str]) -> list[str]:
    async with UnifiedLLMInference(config(urls, caps=1, strategy="failover", max_waiting=4),
                                   logging.getLogger("bench")) as llm:
        await llm.chat([{"role": "user", "content": "warm up"}], max_tokens=4)

        async def attempt(i: int) -> tuple[str, float | None, str | None]:
            try:
                await llm.chat([{"role": "user", "content": PROMPT.format(i=i)}],
                               max_tokens=64, stop=["USER:"])
                return "ok", None, None
            except Overloaded as exc:
                await asyncio.sleep(exc.retry_after)
                try:
                    await llm.chat([{"role": "user", "content": PROMPT.format(i=i)}],
                                   max_tokens=64, stop=["USER:"])
                    return "refused", exc.retry_after, "ok"
                except Overloaded:
                    return "refused", exc.retry_after, "refused again"

        outcomes = await asyncio.gather(*(attempt(i) for i in range(32)))
    refused = [o for o in outcomes if o[0] == "refused"]
    waits = [o[1] for o in refused if o[1] is not None]
    retried_ok = sum(1 for o in refused if o[2] == "ok")
    return [
        f"- 32 at once, two servers at `max_concurrency: 1`, `max_waiting: 4`: "
        f"{32 - len(refused)} served at once or after queueing, {len(refused)} refused "
        f"(429 over HTTP on the OpenAI face, 503 on the Ollama face).",
        f"- `retry_after` said {min(waits):g}–{max(waits):g} s (median "
        f"{statistics.median(waits):g} s)." if waits else "- nothing was refused.",
        f"- One retry after that wait: {retried_ok} of {len(refused)} succeeded.",
    ]


async def measure(count: int) -> str:
    with llama_servers(2, threads=1, n_ctx=1024) as urls:
        rows = [
            await bursts(urls, "failover, no caps", None, "failover", count),
            await bursts(urls, "caps of 1, spillover (failover)", 1, "failover", count),
            await bursts(urls, "caps of 1, least_busy", 1, "least_busy", count),
        ]
        over = await overload(urls)
    return "\n".join([
        "# Busy servers on real engines",
        "",
        f"`python -m bench.busy --bursts {count}`: two llama_cpp.server processes (default "
        "settings, Gemma 3 270M, one thread each) as LM Studio and a `kind: openai` "
        f"provider, Ollama down; {count} bursts of 8 concurrent streamed chats, 64 tokens "
        "each. Seconds.",
        "",
        "| Configuration | Requests | Failed | TTFT p50 | TTFT p95 | Total p50 | Total p95 | "
        "Served LM Studio / box |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        "## Overload",
        "",
        *over,
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.busy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args.bursts))
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
