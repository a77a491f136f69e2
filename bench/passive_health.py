"""Health probes against a real llama.cpp server under steady traffic, passive health on/off.

``llama_cpp.server`` (llama-cpp-python, default settings, the Gemma 3 270M GGUF) stands in
for LM Studio; Ollama is down. For ``--seconds`` (60) a client streams one reply after
another (24 tokens each, ``--pause`` 0.2 s between them) while health checks are due every
``--interval`` (1 s). The server aborts the reply it is generating whenever another request
arrives (its ``interrupt_requests``, on by default), and a probe is such a request.

Counted per run: replies, broken replies (a break after text, or a request that failed),
probes of the server, and probes sent while a reply was in flight. ``llm.passive_health:
false`` is how DEMI probed before passive health; ``true`` is the default now.

    python -m bench.passive_health [--seconds 60] [--interval 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from bench.sticky import llama_servers
from src.llm import DemiError, HealthReport
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "passive-health.md"


def config(url: str, interval: float, passive: bool) -> dict[str, Any]:
    return {"llm": {
        "ollama": {"base_url": f"http://127.0.0.1:{free_port()}"},
        "lmstudio": {"base_url": url, "model": "gemma", "timeout": 60},
        "embedded": {"enabled": False}, "discover": False,
        "health_check_interval": interval, "passive_health": passive,
    }}


async def run(url: str, seconds: float, interval: float, pause: float,
              passive: bool) -> dict[str, int]:
    async with UnifiedLLMInference(config(url, interval, passive),
                                   logging.getLogger("bench")) as llm:
        state = llm.registry["lmstudio"]
        real_health = state.provider.health
        probes: list[int] = []

        async def counted() -> HealthReport:
            probes.append(state.serving)
            return await real_health()

        state.provider.health = counted  # type: ignore[method-assign]
        replies = broken = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            replies += 1
            try:
                async for _ in llm.stream_chat(
                        [{"role": "user", "content": f"Tell me about the sea ({replies})."}],
                        max_tokens=24, stop=["USER:"]):
                    pass
            except DemiError:
                broken += 1
            await asyncio.sleep(pause)
    return {"replies": replies, "broken": broken, "probes": len(probes),
            "probes_while_serving": sum(1 for n in probes if n)}


async def measure(seconds: float, interval: float, pause: float) -> str:
    rows = []
    with llama_servers(1, threads=2, n_ctx=1024) as (url,):
        for passive in (False, True):
            r = await run(url, seconds, interval, pause, passive)
            rows.append(f"| {'on' if passive else 'off (before)'} | {r['replies']} | "
                        f"{r['broken']} | {r['probes']} | {r['probes_while_serving']} |")
    return "\n".join([
        "# Health probes and a real llama.cpp server",
        "",
        f"`python -m bench.passive_health --seconds {seconds:g} --interval {interval:g}`: "
        f"{seconds:g} s of streamed replies one after another ({pause:g} s apart), health "
        f"checks due every {interval:g} s, llama_cpp.server at its default settings.",
        "",
        "| passive_health | Replies | Broken | Probes | Probes during a reply |",
        "|---|---:|---:|---:|---:|",
        *rows, "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passive_health",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args.seconds, args.interval, args.pause))
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
