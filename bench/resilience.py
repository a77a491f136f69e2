"""``python -m bench.resilience``: what hedging and warm standby buy, in seconds and requests.

Three measurements over the fake servers (real processes on loopback), driving
``UnifiedLLMInference`` in this process, writing ``bench/results/resilience.md``:

1. **Hung primary, first token**: Ollama accepts and never answers. Time to the first token
   of a fresh DEMI's first streamed request, with hedging (the first token arrives about the
   hedge delay later than usual) and without (it waits the whole first-token timeout).
2. **Extra upstream requests per 100 requests**, hedging on (the default ``max_percent``),
   with a healthy primary and with a hung one (chat requests both fakes received, minus 100).
3. **Cold-load failover**: LM Studio's model is not loaded and takes ``LOAD_TIME`` seconds to
   load; Ollama dies; time to the first token of the next request, with and without
   ``llm.warm_standby``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from src.core.config import DemiConfig
from src.llm import UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer

HI = [{"role": "user", "content": "hi"}]
TIMEOUT = 3.0
MIN_DELAY = 0.3
LOAD_TIME = 2.0
RESULTS = Path(__file__).parent / "results" / "resilience.md"


def _config(ollama: FakeServer, lmstudio: FakeServer, **llm: Any) -> DemiConfig:
    base: dict[str, Any] = {
        "ollama": {"base_url": ollama.url, "timeout": TIMEOUT},
        "lmstudio": {"base_url": lmstudio.url, "timeout": 30},
        "embedded": {"enabled": False},
        "health_check_interval": 60, "probe_interval": 0.05, "connect_timeout": 1,
        "hedge": {"enabled": True, "min_delay": MIN_DELAY, "delay_factor": 2.0,
                  "max_percent": 10, "embedded": False},
    }
    for key, value in llm.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return DemiConfig.from_mapping({"llm": base})


async def _ttft(llm: UnifiedLLMInference) -> float:
    started = time.perf_counter()
    async for _ in llm.stream_chat(HI):
        return time.perf_counter() - started
    raise RuntimeError("no text")


def _chats(fake: FakeServer) -> int:
    return sum(r["path"] in ("/api/chat", "/v1/chat/completions") for r in fake.requests())


Samples = dict[str, list[float]]


async def hung_first_token(ollama: FakeServer, lmstudio: FakeServer, trials: int) -> Samples:
    out: dict[str, list[float]] = {"hedge on": [], "hedge off": []}
    for label, enabled in (("hedge on", True), ("hedge off", False)):
        for _ in range(trials):
            ollama.reset()
            lmstudio.reset()
            ollama.control(mode="hang")
            cfg = _config(ollama, lmstudio, hedge={"enabled": enabled})
            async with UnifiedLLMInference(cfg, _quiet()) as llm:
                out[label].append(await _ttft(llm))
    return out


async def extra_requests(ollama: FakeServer, lmstudio: FakeServer, n: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for label, mode in (("healthy primary", "ok"), ("hung primary", "hang")):
        ollama.reset()
        lmstudio.reset()
        ollama.control(mode=mode)
        async with UnifiedLLMInference(_config(ollama, lmstudio), _quiet()) as llm:
            await _concurrently(llm, n, 10)
        to_ollama, to_lmstudio = _chats(ollama), _chats(lmstudio)
        out[label] = (f"{to_ollama + to_lmstudio - n} (upstream chat requests: Ollama "
                      f"{to_ollama}, LM Studio {to_lmstudio})")
    return out


async def cold_failover(ollama: FakeServer, lmstudio: FakeServer, trials: int) -> Samples:
    out: dict[str, list[float]] = {"warm standby on": [], "warm standby off": []}
    for label, enabled in (("warm standby on", True), ("warm standby off", False)):
        for _ in range(trials):
            if not ollama.is_running():
                ollama.start()
            ollama.reset()
            lmstudio.reset()
            lmstudio.control(loaded=[], jit=True, load_time=LOAD_TIME)
            cfg = _config(ollama, lmstudio, warm_standby={
                "enabled": enabled, "interval": 0.2, "keep_for": 300})
            async with UnifiedLLMInference(cfg, _quiet()) as llm:
                if enabled:
                    await _until_loaded(lmstudio, "qwen2.5-7b-instruct")
                ollama.kill()
                out[label].append(await _ttft(llm))
    return out


async def _concurrently(llm: UnifiedLLMInference, n: int, width: int) -> None:
    sem = asyncio.Semaphore(width)

    async def one() -> None:
        async with sem:
            await llm.chat(HI)

    await asyncio.gather(*(one() for _ in range(n)))


async def _until_loaded(fake: FakeServer, model: str) -> None:
    """The standby loop's first round pays the cold load; wait for it (polling the fake)."""
    while model not in fake.config()["loaded"]:  # noqa: ASYNC110 (another process's state)
        await asyncio.sleep(0.1)


def _quiet() -> logging.Logger:
    logger = logging.getLogger("bench.resilience.demi")
    logger.setLevel(logging.CRITICAL)
    return logger


def _fmt(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s (min {min(values):.2f}, "
            f"max {max(values):.2f}, n={len(values)})")


async def run(trials: int, n: int) -> str:
    with FakeServer("ollama") as ollama, FakeServer("lmstudio") as lmstudio:
        hung = await hung_first_token(ollama, lmstudio, trials)
        extra = await extra_requests(ollama, lmstudio, n)
        cold = await cold_failover(ollama, lmstudio, trials)
    lines = [
        "# Hedged first token and warm standby (`python -m bench.resilience`)",
        "",
        f"Fakes on loopback; Ollama first-token timeout {TIMEOUT:g} s, hedge min_delay "
        f"{MIN_DELAY:g} s (no measured p95 yet on a fresh DEMI), max_percent 10, "
        f"simulated cold load {LOAD_TIME:g} s.",
        "",
        "| measurement | result |",
        "|---|---|",
        *(f"| hung primary, first token, {k} | {_fmt(v)} |" for k, v in hung.items()),
        *(f"| extra upstream requests per {n} requests, {k} | {v} |" for k, v in extra.items()),
        *(f"| cold-load failover, first token, {k} | {_fmt(v)} |" for k, v in cold.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    opts = parser.parse_args(argv)
    text = asyncio.run(run(opts.trials, opts.requests))
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
