"""Figure 6 — the embedded engine: start-up, memory split, and the cost of the last resort.

Three numbers the engine process changes:

* **start to first embedded answer** — a conductor whose Ollama and LM Studio addresses have
  nothing listening, from process spawn to the first chat reply served by the embedded model
  (the engine process starts, loads Gemma 3 270M and checks itself meanwhile);
* **memory** — RSS of the conductor process alone and of its engine process, with the model
  loaded: the model's memory lives in the engine, not in the gateway;
* **both servers die** — a conductor over the fake Ollama and LM Studio answers through
  Ollama; both fakes are SIGKILLed; the first request afterwards is timed, then the embedded
  model's own steady latency, and the difference is what the failover added.

Every request asks for 8 tokens at temperature 0 (the model's time dominates otherwise), and
every question differs, so the embedded figures include reading each new prompt.
Skipped with a note when the embedded extra is not installed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.procs import REPO_ROOT, ServiceProcess, TargetFailed, clean_env
from src.testing.fakes.launcher import FakeServer, free_port

CONFIG = """\
llm:
  embedded: {max_tokens: 8, threads: 2}
  probe_interval: 0.05
"""
_asked = 0


def _body() -> bytes:
    """A chat body; each question differs, so no reply is served from the prompt cache."""
    global _asked
    _asked += 1
    return json.dumps({
        "model": "demi", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": f"Question {_asked}: name a colour."}],
    }).encode()
STEADY = 5


@dataclass(frozen=True)
class EmbeddedFigures:
    start_to_answer: float
    conductor_rss: int
    engine_rss: int
    healthy_p50: float
    first_after_death: float
    embedded_p50: float
    first_provider: str

    @property
    def added(self) -> float:
        return self.first_after_death - self.embedded_p50


def available() -> tuple[bool, str | None]:
    """Whether the embedded extra is installed (without importing llama.cpp here)."""
    from src.llm.providers.embedded import embedded_available

    return embedded_available()


async def _ask(session: aiohttp.ClientSession, base: str) -> tuple[float, str]:
    """One chat request: (seconds, provider that served it); raises on a failed reply."""
    started = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", data=_body(),
                            headers={"Content-Type": "application/json"}) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise TargetFailed(f"embedded figure: HTTP {resp.status}: {raw[:300]!r}")
        return time.perf_counter() - started, resp.headers.get("X-DEMI-Provider", "?")


def _conductor(workdir: Path, ollama: str, lmstudio: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    config = workdir / "embedded-bench.yaml"
    config.write_text(CONFIG)
    env = clean_env({
        "PYTHONPATH": str(REPO_ROOT), "OLLAMA_BASE_URL": ollama, "LMSTUDIO_BASE_URL": lmstudio,
        "DEMI_EMBEDDED_ENABLED": "true", "DEMI_LOG_LEVEL": "WARNING", "DEMI_PORT": str(port),
        "DEMI_CONFIG": str(config),
    })
    argv = [sys.executable, "-m", "src.conductor", "serve", "--port", str(port)]
    return ServiceProcess("DEMI+embedded", argv, env, workdir), f"http://127.0.0.1:{port}"


async def _first_answer(
    session: aiohttp.ClientSession, proc: ServiceProcess, base: str, limit: float = 180,
) -> tuple[float, str]:
    """Seconds from spawn to the first answered chat, and who answered it."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if proc.exit_code() is not None:
            raise TargetFailed(f"DEMI exited before answering:\n{proc.log_tail()}")
        try:
            _, provider = await _ask(session, base)
            return time.perf_counter() - proc.started_at, provider
        except (aiohttp.ClientError, TargetFailed):
            await asyncio.sleep(0.01)
    raise TargetFailed(f"DEMI did not answer within {limit:g}s:\n{proc.log_tail()}")


async def _embedded_healthy(session: aiohttp.ClientSession, base: str) -> bool:
    async with session.get(base + "/status") as resp:
        status = await resp.json()
    return bool(status["providers"]["embedded"]["healthy"])


def _rss(proc: ServiceProcess) -> tuple[int, int]:
    """(conductor RSS, engine RSS) in bytes."""
    parent = psutil.Process(proc.pid)
    engines = [c for c in parent.children(recursive=True)
               if "src.llm.engine.child" in " ".join(c.cmdline())]
    return parent.memory_info().rss, sum(c.memory_info().rss for c in engines)


async def measure(workdir: Path, log: Callable[[str], None]) -> EmbeddedFigures:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        log("embedded: start to first answer, with both servers down")
        dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        proc, base = _conductor(workdir, *dead)
        proc.start()
        try:
            start, provider = await _first_answer(session, proc, base)
            if provider != "embedded":
                raise TargetFailed(f"embedded figure: answered by {provider}, not embedded")
            conductor_rss, engine_rss = _rss(proc)
        finally:
            proc.stop()

        log("embedded: both servers die")
        fakes = [FakeServer(kind).start() for kind in ("ollama", "lmstudio")]
        proc, base = _conductor(workdir, fakes[0].url, fakes[1].url)
        proc.start()
        try:
            await _first_answer(session, proc, base)
            healthy = [(await _ask(session, base))[0] for _ in range(STEADY)]
            # The engine starts with the conductor: wait until it is ready and healthy, so the
            # figure is the failover's cost, not the model's load.
            for _ in range(1200):
                if await _embedded_healthy(session, base):
                    break
                await asyncio.sleep(0.1)
            else:
                raise TargetFailed(f"the embedded model never became healthy:\n{proc.log_tail()}")
            for fake in fakes:
                fake.kill()
            first, first_provider = await _ask(session, base)
            steady = [(await _ask(session, base))[0] for _ in range(STEADY)]
        finally:
            proc.stop()
            for fake in fakes:
                fake.stop()
    return EmbeddedFigures(
        start_to_answer=start, conductor_rss=conductor_rss, engine_rss=engine_rss,
        healthy_p50=statistics.median(healthy), first_after_death=first,
        embedded_p50=statistics.median(steady), first_provider=first_provider,
    )


def render(fig: EmbeddedFigures) -> str:
    mb = 1024 * 1024
    rows = [
        ("Start to first embedded answer (both servers down)", f"{fig.start_to_answer:.2f} s"),
        ("Conductor RSS, model loaded", f"{fig.conductor_rss / mb:.0f} MB"),
        ("Engine process RSS, model loaded", f"{fig.engine_rss / mb:.0f} MB"),
        ("Healthy request via Ollama, p50", f"{fig.healthy_p50 * 1000:.1f} ms"),
        (f"First request after both servers die (served by {fig.first_provider})",
         f"{fig.first_after_death * 1000:.1f} ms"),
        ("Embedded model's own latency, p50 of the next 5", f"{fig.embedded_p50 * 1000:.1f} ms"),
        ("Time the failover added to that first request", f"{fig.added * 1000:+.1f} ms"),
    ]
    lines = [
        "## Figure 6 — the embedded engine",
        "",
        "8-token replies at temperature 0 from Gemma 3 270M (2 threads) in the engine process.",
        "",
        "| Measure | Value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines) + "\n"
