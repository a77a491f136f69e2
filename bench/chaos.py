"""``python -m bench.chaos``: the conductor under load while its primary misbehaves.

A conductor process serves >= 30 concurrent clients (the real ``openai`` and ``ollama``
libraries, the four request types: OpenAI JSON and SSE, Ollama JSON and NDJSON) over a fake
Ollama (the primary) and a fake LM Studio, while the primary is SIGKILLed, restarted, hung,
made to answer 500, to cut streams, to send error events and malformed lines, and flapped.
Both fakes give the same reply and continue it from a prefill, so every answer can be
checked word for word: a continued stream must be exactly the reply.

It prints a table per phase and exits 1 unless: no request was lost (every one got the whole
reply), no stream was interrupted (``llm.mid_stream: continue``), provider switches stayed
bounded (at most :data:`SWITCHES_PER_FAULT` per injected fault plus
:data:`SWITCHES_PER_SECOND` while a fault lasts), and the conductor is alive
and healthy at the end. ``.ci/run`` runs it; about a minute and a half.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ollama
import openai

from src.testing.fakes.launcher import REPO_ROOT, FakeServer, free_port

REPLY = " ".join(f"word{i}" for i in range(12))
KINDS = ("openai_json", "openai_sse", "ollama_json", "ollama_ndjson")
SWITCHES_PER_FAULT = 4
SWITCHES_PER_SECOND = 2
"""A primary that fails requests but passes its health check is readmitted by the probes
(two good probes) and fails again: at most one round trip a second with these settings."""
CHUNK_DELAY = 0.03
HI = [{"role": "user", "content": "hi"}]

CONFIG = """\
llm:
  connect_timeout: 1
  read_idle_timeout: 1.5
  health_check_interval: 1
  health_check_timeout: 1
  probe_interval: 0.1
  probe_backoff_max: 0.5
  ollama: {timeout: 2}
  lmstudio: {timeout: 10}
  embedded: {enabled: false}
  hedge: {enabled: true, min_delay: 0.3, max_percent: 50}
conductor:
  shutdown_grace: 2
logging:
  level: INFO
"""


@dataclass
class Phase:
    name: str
    faults: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    switches: int = 0
    continued: int = 0
    hedged: int = 0


class Conductor:
    """``python -m src.conductor serve`` over the two fakes, its log in a file."""

    def __init__(self, workdir: Path, ollama_url: str, lmstudio_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "chaos.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        self.log_path = workdir / "conductor.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DEMI_", "OLLAMA_", "LMSTUDIO_"))}
        env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", DEMI_CONFIG=str(config),
                   OLLAMA_BASE_URL=ollama_url, LMSTUDIO_BASE_URL=lmstudio_url)
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "src.conductor", "serve", "--port", str(self.port)],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def wait_ready(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"conductor exited: {self.log()[-2000:]}")
            try:
                self.get("/health")
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("conductor did not answer /health")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def switch_lines(self) -> int:
        return sum("switched" in line.lower() for line in self.log().splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def _one(kind: str, oai: openai.AsyncOpenAI, oll: ollama.AsyncClient) -> str:
    """One request of ``kind``: ``ok``, ``interrupted`` (an error after text) or ``lost``."""
    text = ""
    try:
        if kind == "openai_json":
            got = await oai.chat.completions.create(model="demi", messages=HI)  # type: ignore[arg-type]
            text = got.choices[0].message.content or ""
        elif kind == "openai_sse":
            stream = await oai.chat.completions.create(model="demi", messages=HI,  # type: ignore[arg-type]
                                                       stream=True)
            async for chunk in stream:
                text += "".join(c.delta.content or "" for c in chunk.choices)
        elif kind == "ollama_json":
            answer = await oll.chat(model="demi", messages=HI)
            text = answer.message.content or ""
        else:
            async for part in await oll.chat(model="demi", messages=HI, stream=True):
                text += part.message.content or ""
    except (openai.APIError, ollama.ResponseError):
        return "interrupted" if text else "lost"
    except Exception:  # a connection error, a timeout: the request was lost
        return "lost"
    return "ok" if text == REPLY else "wrong_text"


async def _client(
    kind: str, stop: asyncio.Event, phase: Callable[[], Phase], url: str,
) -> None:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                                  timeout=60) as oai:
        oll = ollama.AsyncClient(host=url, timeout=60)
        try:
            while not stop.is_set():
                started_in = phase()
                outcome = await _one(kind, oai, oll)
                started_in.outcomes[f"{kind}:{outcome}"] += 1
                started_in.outcomes[outcome] += 1
        finally:
            await oll.close()


def _faults(primary: FakeServer) -> list[tuple[str, Callable[[], Awaitable[int]]]]:
    """(phase name, what to do at its start -> faults injected); flapping keeps going."""

    async def ctl(**kw: Any) -> None:
        await asyncio.to_thread(primary.control, **kw)

    async def reset() -> None:
        if not primary.is_running():
            await asyncio.to_thread(primary.start)
        await ctl(mode="ok", chunk_delay=CHUNK_DELAY, times=None, after_chunks=None)

    def mode(**kw: Any) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            await reset()
            await ctl(**kw)
            return 1
        return run

    async def baseline() -> int:
        await reset()
        return 0

    async def sigkill() -> int:
        await asyncio.to_thread(primary.kill)
        return 1

    async def restart() -> int:
        await reset()
        return 1

    return [
        ("baseline", baseline),
        ("SIGKILL primary", sigkill),
        ("restarted", restart),
        ("hung", mode(mode="hang")),
        ("HTTP 500", mode(mode="status", status=500)),
        ("cut streams", mode(mode="cut", after_chunks=3)),
        ("error events", mode(mode="midstream_error", after_chunks=3)),
        ("malformed lines", mode(mode="malformed", after_chunks=3)),
        ("stalled streams", mode(mode="hang", after_chunks=3)),
        ("flapping", baseline),
        ("recovered", baseline),
    ]


async def _flap(primary: FakeServer, until: float) -> int:
    """Kill and restart the primary every second until ``until``; the faults injected."""
    flips = 0
    while time.monotonic() < until - 1:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(primary.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(primary.start)
        await asyncio.to_thread(primary.control, chunk_delay=CHUNK_DELAY)
        flips += 2
    return flips


async def run(clients: int, seconds: float) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="demi-chaos-"))
    args = ["--reply", REPLY]
    with FakeServer("ollama", args=args) as primary, FakeServer("lmstudio", args=args) as spare:
        spare.control(chunk_delay=CHUNK_DELAY)
        primary.control(chunk_delay=CHUNK_DELAY)
        demi = Conductor(workdir, primary.url, spare.url)
        try:
            demi.wait_ready()
            return await _drive(demi, primary, clients, seconds)
        finally:
            demi.stop()


async def _drive(demi: Conductor, primary: FakeServer, clients: int, seconds: float) -> int:
    phases: list[Phase] = []
    current: list[Phase] = [Phase("warm-up")]
    stop = asyncio.Event()
    workers = [asyncio.create_task(_client(KINDS[i % 4], stop, lambda: current[0], demi.url))
               for i in range(clients)]
    await asyncio.sleep(1.0)
    for name, inject in _faults(primary):
        before = demi.get("/status")
        switches = demi.switch_lines()
        phase = Phase(name)
        current[0] = phase
        phases.append(phase)
        phase.faults = await inject()
        if name == "flapping":
            phase.faults += await _flap(primary, time.monotonic() + seconds)
        else:
            await asyncio.sleep(seconds)
        after = demi.get("/status")
        phase.switches = demi.switch_lines() - switches
        phase.continued = (after["counters"]["stream_continuations"]
                           - before["counters"]["stream_continuations"])
        phase.hedged = after["hedge"]["hedged"] - before["hedge"]["hedged"]
    stop.set()
    await asyncio.wait_for(asyncio.gather(*workers), 90)
    alive = demi.proc.poll() is None and demi.get("/health") == {"status": "ok"}
    return _report(phases, clients, seconds, alive)


def _report(phases: list[Phase], clients: int, seconds: float, alive: bool) -> int:
    head = (f"{'phase':<17}{'requests':>9}{'ok':>7}{'lost':>6}{'interr.':>8}{'wrong':>7}"
            f"{'continued':>10}{'hedged':>8}{'faults':>7}{'switches':>9}")
    print(f"chaos: {clients} concurrent clients, {', '.join(KINDS)}")
    print(head)
    print("-" * len(head))
    total: Counter[str] = Counter()
    failures: list[str] = []
    for p in phases:
        o = p.outcomes
        n = o["ok"] + o["lost"] + o["interrupted"] + o["wrong_text"]
        total.update({k: v for k, v in o.items() if ":" not in k})
        print(f"{p.name:<17}{n:>9}{o['ok']:>7}{o['lost']:>6}{o['interrupted']:>8}"
              f"{o['wrong_text']:>7}{p.continued:>10}{p.hedged:>8}{p.faults:>7}"
              f"{p.switches:>9}")
        bound = SWITCHES_PER_FAULT * p.faults + (SWITCHES_PER_SECOND * seconds if p.faults
                                                 else 1)
        if p.switches > bound:
            failures.append(f"{p.name}: {p.switches} switches > {bound}")
        for kind in KINDS:
            if o[f"{kind}:ok"] == 0:
                failures.append(f"{p.name}: no {kind} request completed")
    print("-" * len(head))
    print(f"total: {sum(total.values())} requests, {total['lost']} lost, "
          f"{total['interrupted']} interrupted, {total['wrong_text']} wrong text; "
          f"conductor {'alive' if alive else 'DEAD'}")
    for what in ("lost", "interrupted", "wrong_text"):
        if total[what]:
            failures.append(f"{total[what]} {what}")
    if not alive:
        failures.append("the conductor is not alive and healthy")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    opts = parser.parse_args(argv)
    return asyncio.run(run(opts.clients, opts.seconds))


if __name__ == "__main__":
    raise SystemExit(main())
