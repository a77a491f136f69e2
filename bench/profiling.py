"""``--profile``: where DEMI's time goes under load, sampled by py-spy from outside.

py-spy attaches to the running conductor (no change to DEMI, no extra dependency in its
environment) while the bench drives a mix of OpenAI JSON, OpenAI SSE and Ollama NDJSON
requests at concurrency 32. The raw stacks go to ``bench/results/profile-demi.txt``; the
summary (own time by package, and the DEMI functions with the most time inside them) is
printed and written next to it. Without py-spy the run is skipped with a note (exit 0).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import targets
from bench.client import OLLAMA, OPENAI, Client, run_for
from bench.failover import FAKE_ARGS
from bench.procs import REPO_ROOT
from bench.stats import Sample
from bench.table import render
from src.testing.fakes.launcher import FakeServer

RESULTS = REPO_ROOT / "bench" / "results"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def find_py_spy(option: str | None) -> str | None:
    candidates = [option, shutil.which("py-spy"), str(Path(sys.executable).with_name("py-spy"))]
    return next((c for c in candidates if c and Path(c).is_file()), None)


LAYERS = {
    "DEMI (src/)": ("src",),
    "ollama client (ollama, httpx, httpcore, anyio, h11, pydantic)": (
        "ollama", "httpx", "httpcore", "anyio", "h11", "pydantic", "pydantic_core", "sniffio"),
    "aiohttp (server and LM Studio client)": ("aiohttp", "multidict", "yarl"),
}
_ENTRY = ("src/conductor/__main__", "src/conductor/cli", "src/conductor/commands/")
# Stdlib modules whose time belongs to whoever called them (a socket write, a timer, a task).
_PASS_THROUGH = frozenset({"asyncio", "selectors", "socket", "contextlib", "json", "functools",
                           "typing", "enum", "logging", "re", "collections", "weakref", "abc"})


def package_of(path: str) -> str:
    """py-spy names files relative to their sys.path entry: DEMI modules keep their path,
    anything else is reduced to its top-level package or stdlib module."""
    path = path.removesuffix(".py")
    if path.startswith("src/"):
        return path
    return path.split("/", 1)[0].lstrip("<").rstrip(">")


def layer_of(package: str) -> str:
    top = package.split("/", 1)[0]
    return next((name for name, tops in LAYERS.items() if top in tops),
                "asyncio, stdlib and the rest")


def summarise(raw: str, top: int = 15) -> str:
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    callers: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [m for f in stack.split(";") if (m := _FRAME.match(f.strip()))]
        if not frames:
            continue
        total += n
        package = package_of(frames[-1]["file"])
        own[package] += n
        layers[layer_of(package)] += n
        caller = next((m for m in reversed(frames)
                       if package_of(m["file"]) not in _PASS_THROUGH), frames[-1])
        callers[f"{package_of(caller['file'])}:{caller['func']}"] += n
        seen = {f"{package_of(m['file'])}:{m['func']}" for m in frames}
        for key in seen:
            if key.startswith("src/") and not key.startswith(_ENTRY):
                inside[key] += n
    if not total:
        return "py-spy collected no samples."

    def rows(counter: Counter[str]) -> list[list[str]]:
        return [[k, f"{100 * v / total:.1f}%"] for k, v in counter.most_common(top)]

    return "\n\n".join([
        f"{total} samples of busy time (py-spy leaves idle waiting out).",
        "Own time by layer:\n\n" + render(["layer", "share"], rows(layers)),
        "Own time by package or module:\n\n" + render(["package / module", "share"], rows(own)),
        "Own time charged to the nearest caller outside asyncio and the stdlib (a socket "
        "write counts for whoever wrote):\n\n" + render(["caller", "share"], rows(callers)),
        "DEMI functions, time inside (cumulative):\n\n"
        + render(["DEMI function", "share"], rows(inside)),
    ])


async def profile(seconds: float, concurrency: int, py_spy_option: str | None) -> int:
    py_spy = find_py_spy(py_spy_option)
    if py_spy is None:
        print("note: --profile skipped: py-spy not found (pip install py-spy, or --py-spy PATH)")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="demi-profile-"))
    fakes = [FakeServer(kind, args=FAKE_ARGS).start() for kind in ("ollama", "lmstudio")]
    client = Client()
    demi: targets.Target | None = None
    raw_path = RESULTS / "profile-demi.txt"
    try:
        demi = await targets.demi(client, fakes[0].url, fakes[1].url, workdir)
        assert demi.proc is not None
        calls = [(demi.endpoints[OPENAI], False), (demi.endpoints[OPENAI], True),
                 (demi.endpoints[OLLAMA], True)]
        counter = iter(range(10**9))

        async def mixed() -> Sample:
            ep, stream = calls[next(counter) % len(calls)]
            return await client.request(ep, stream)

        await run_for(mixed, concurrency, 2.0)  # warm-up
        RESULTS.mkdir(parents=True, exist_ok=True)
        spy = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(demi.proc.pid), "--duration", f"{seconds:g}",
            "--rate", "250", "--format", "raw", "--output", str(raw_path), "--nonblocking",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        samples, elapsed = await run_for(mixed, concurrency, seconds)
        _, err = await spy.communicate()
        if spy.returncode != 0:
            print(f"note: py-spy failed ({err.decode(errors='replace').strip()[-300:]})")
            return 0
    finally:
        if demi is not None:
            demi.stop()
        await client.close()
        for fake in fakes:
            fake.stop()
    ok = sum(1 for s in samples if s.ok)
    text = (f"# Where DEMI's time goes\n\n{ok} requests in {elapsed:.1f} s at concurrency "
            f"{concurrency} "
            f"(OpenAI JSON, OpenAI SSE, Ollama NDJSON in turn), sampled by py-spy at 250 Hz.\n\n"
            + summarise(raw_path.read_text()) + "\n")
    print(text)
    (RESULTS / "profile-demi.md").write_text(text)
    return 0
