"""Claude Code itself, from the npm registry, run non-interactively against DEMI.

``claude -p "Say hello"`` with ``ANTHROPIC_BASE_URL`` at a conductor process in front of the
fake servers and ``ANTHROPIC_AUTH_TOKEN`` as DEMI's API key: a temp ``HOME``, every proxy
pointed at a dead loopback port (loopback itself exempt), Claude Code's nonessential
traffic off and a bounded time. It must exit 0 printing the fake's reply.

Claude Code is installed once into a cache folder (``~/.cache/demi/agents/claude``, or
``$DEMI_AGENT_CACHE/claude``), like the bench installs Portkey. It offers its tools on
every turn and opens turns of its own (a background agent reporting back), so the fakes run
with ``tool_calls: once``: one tool round per conversation, then text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from src.testing.fakes.launcher import FakeServer, free_port
from tests.e2e.helpers import LMSTUDIO_REPLY, OLLAMA_REPLY, ConductorProcess

pytestmark = pytest.mark.timeout(600)

PACKAGE = "@anthropic-ai/claude-code"
VERSION = "2.1.328"
TOKEN = "demi-test-key"
RUN_TIMEOUT = 120.0
CONTEXT_WINDOW = 200_000
"""Claude Code's system prompt and tools alone are about 12k tokens: with the default 8k
window DEMI would trim the tool results the fakes look for."""


def cache_dir() -> Path:
    base = os.environ.get("DEMI_AGENT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "demi" / "agents"
    return root / "claude"


def _native(home: Path) -> Path | None:
    """The native ``claude`` binary of an install: the wrapper's bin (its postinstall copies
    the platform binary there), else the platform package's own."""
    modules = home / "node_modules" / "@anthropic-ai"
    candidates = [modules / "claude-code" / "bin" / "claude.exe",
                  *sorted(modules.glob("claude-code-*/claude"))]
    for path in candidates:
        if path.is_file() and path.stat().st_size > 1_000_000 and os.access(path, os.X_OK):
            return path
    return None


def install() -> tuple[Path | None, str]:
    """Claude Code's binary (installing it once), or None and why not."""
    home = cache_dir()
    found = _native(home)
    if found is not None and _version(found) == VERSION:
        return found, ""
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm is not installed"
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(home), "--no-audit", "--no-fund",
         f"{PACKAGE}@{VERSION}"],
        capture_output=True, text=True, timeout=900,
    )
    found = _native(home)
    if done.returncode != 0 or found is None:
        return None, f"npm install {PACKAGE}@{VERSION} failed: {done.stderr.strip()[-400:]}"
    return found, ""


def _version(binary: Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=60, env={"PATH": os.environ.get("PATH", ""),
                                              "HOME": str(binary.parent)})
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"(\S+)", out.stdout)
    return match.group(1) if match else None


@pytest.fixture(scope="module")
def claude() -> Path:
    binary, why = install()
    if binary is None:
        pytest.skip(why)
    return binary


@pytest.fixture
def demi_for_agents(
    tmp_path: Path, ollama_fake: FakeServer, lmstudio_fake: FakeServer
) -> Iterator[Callable[[], ConductorProcess]]:
    """A conductor with an API key and a window that holds an agent's conversation."""
    started: list[ConductorProcess] = []

    def make() -> ConductorProcess:
        for fake in (ollama_fake, lmstudio_fake):
            fake.control(tool_calls="once")
        workdir = tmp_path / "demi"
        workdir.mkdir()
        proc = ConductorProcess(workdir, ollama_fake.url, lmstudio_fake.url,
                                env={"DEMI_API_KEY": TOKEN}, level="DEBUG")
        config = workdir / "demi.yaml"
        text = config.read_text(encoding="utf-8")
        for name in ("ollama", "lmstudio"):
            old = f"{name}: {{timeout: 10}}"
            assert old in text
            text = text.replace(old, f"{name}: {{timeout: 10, context_window: {CONTEXT_WINDOW}}}")
        config.write_text(text, encoding="utf-8")
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


def run_claude(claude: Path, demi: ConductorProcess, tmp_path: Path,
               prompt: str) -> subprocess.CompletedProcess[str]:
    """``claude -p PROMPT`` against ``demi``, offline but for loopback, in a bounded time."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": demi.url,
        "ANTHROPIC_AUTH_TOKEN": TOKEN,
        "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead, "http_proxy": dead,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return subprocess.run([str(claude), "-p", prompt], cwd=work, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def messages_statuses(demi: ConductorProcess) -> dict[str, float]:
    """``demi_http_requests_total`` for ``/v1/messages`` by status, from /metrics."""
    with urllib.request.urlopen(urllib.request.Request(
            demi.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}),
            timeout=5) as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("demi_http_requests_total{") and 'endpoint="/v1/messages"' in line:
            status = re.search(r'status="(\d+)"', line)
            assert status is not None
            counts[status.group(1)] = counts.get(status.group(1), 0) + float(line.split()[-1])
    return counts


def chats(fake: FakeServer) -> list[dict[str, Any]]:
    path = "/api/chat" if fake.kind == "ollama" else "/v1/chat/completions"
    return [r["json"] for r in fake.requests() if r["path"] == path]


def test_claude_code_says_hello_through_demi(
    claude: Path, demi_for_agents: Callable[[], ConductorProcess], ollama_fake: FakeServer,
    tmp_path: Path,
) -> None:
    """claude -p exits 0 printing Ollama's reply; every request it sent DEMI was a 200, its
    tools reached Ollama, and a tool call went round (call, result, then text)."""
    demi = demi_for_agents()
    done = run_claude(claude, demi, tmp_path, "Say hello")
    assert done.returncode == 0, (done.stdout, done.stderr, demi.stderr()[-3000:])
    assert OLLAMA_REPLY in done.stdout
    statuses = messages_statuses(demi)
    assert set(statuses) == {"200"}, statuses
    sent = chats(ollama_fake)
    assert sent and all(body.get("tools") for body in sent)
    assert any(m.get("role") == "tool" for body in sent for m in body["messages"])
    assert any(m.get("role") == "assistant" and m.get("tool_calls")
               for body in sent for m in body["messages"])
    assert "Say hello" in json.dumps(sent[0]["messages"])


def test_claude_code_is_answered_by_the_fallback_when_ollama_is_dead(
    claude: Path, demi_for_agents: Callable[[], ConductorProcess], ollama_fake: FakeServer,
    lmstudio_fake: FakeServer, tmp_path: Path,
) -> None:
    """With Ollama killed, the same run is answered by LM Studio (an OpenAI-kind server)."""
    demi = demi_for_agents()
    ollama_fake.kill()
    done = run_claude(claude, demi, tmp_path, "Say hello")
    assert done.returncode == 0, (done.stdout, done.stderr, demi.stderr()[-3000:])
    assert LMSTUDIO_REPLY in done.stdout
    assert set(messages_statuses(demi)) == {"200"}
    assert chats(lmstudio_fake)
