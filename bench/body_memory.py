"""What a large request costs the conductor in memory: peak RSS for one 50 MB chat.

``python -m bench.body_memory [--mb 50]`` starts a fake Ollama and DEMI (``python -m
src.conductor serve``, embedded model off), warms DEMI up with small requests, then sends
one chat whose user message carries a base64 image of ``--mb`` megabytes (on the OpenAI
face as a data URL, and on the Ollama face in ``images``). DEMI's peak resident memory is
read from the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``, exact, no
sampling), reset before each request by writing ``5`` to ``/proc/<pid>/clear_refs`` where
the kernel allows it (otherwise each face runs in a fresh DEMI). The figure reported is
``(peak - resident before) / body size``: how many copies of the body DEMI held at once.
Results go to ``bench/results/body-memory.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.client import Client
from bench.procs import ServiceProcess
from bench.targets import demi
from src.testing.fakes.launcher import FakeServer

RESULTS = Path(__file__).resolve().parent / "results" / "body-memory.md"
MB = 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _bodies(size: int) -> dict[str, tuple[str, bytes]]:
    """(path, JSON body) per face, each with a base64 image of about ``size`` bytes."""
    image = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    openai = {"model": "demi", "stream": False, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}]}
    ollama = {"model": "demi", "stream": False, "messages": [
        {"role": "user", "content": "What is in this picture?", "images": [image]}]}
    return {"OpenAI /v1/chat/completions": ("/v1/chat/completions", json.dumps(openai).encode()),
            "Ollama /api/chat": ("/api/chat", json.dumps(ollama).encode())}


async def _measure(proc: ServiceProcess, base: str, path: str, body: bytes) -> dict[str, float]:
    pid = proc.pid
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm up: imports, pools, caches
            small = json.dumps({"model": "demi", "stream": False,
                                "messages": [{"role": "user", "content": "hi"}]})
            async with session.post(base + path, data=small,
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()
        await asyncio.sleep(0.5)
        exact = _reset_peak(pid)
        before = _status_kb(pid, "VmRSS") * 1024
        t0 = time.perf_counter()
        async with session.post(base + path, data=body,
                                headers={"Content-Type": "application/json"}) as r:
            status = r.status
            await r.read()
        seconds = time.perf_counter() - t0
        peak = _status_kb(pid, "VmHWM") * 1024
    if status != 200:
        raise RuntimeError(f"{path} answered {status}:\n{proc.log_tail()}")
    return {"before": before, "peak": peak, "seconds": seconds, "exact": float(exact)}


async def run(mb: float, config: Path | None = None) -> str:
    size = int(mb * MB)
    rows = []
    for face, (path, body) in _bodies(size).items():
        with FakeServer("ollama", args=["--max-recorded", "1"]) as ollama, \
                FakeServer("lmstudio") as lmstudio, tempfile.TemporaryDirectory() as tmp:
            client = Client()
            target = await demi(client, ollama.url, lmstudio.url, Path(tmp), config)
            try:
                assert target.proc is not None
                base = target.endpoints["openai"].url.split("/v1/")[0]
                m = await _measure(target.proc, base, path, body)
            finally:
                target.stop()
                await client.close()
        grown = m["peak"] - m["before"]
        rows.append(f"| {face} | {len(body) / MB:.1f} | {m['before'] / MB:.0f} | "
                    f"{m['peak'] / MB:.0f} | {grown / MB:.0f} | {grown / len(body):.2f} | "
                    f"{m['seconds']:.2f} |")
    return "\n".join([
        "# Peak memory for one large request",
        "",
        f"`python -m bench.body_memory --mb {mb:g}`: one chat with a {mb:g} MB base64 image, "
        "DEMI in front of a fake Ollama; peak RSS is the kernel's high-water mark (VmHWM).",
        "",
        "| Face | Body MB | RSS before MB | Peak RSS MB | Grown MB | Body copies | Seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows, "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.body_memory", description=__doc__)
    parser.add_argument("--mb", type=float, default=50.0, help="body size in MB (default 50)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--config", type=Path, help="a DEMI config file to run with")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.mb, args.config))
    args.output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
