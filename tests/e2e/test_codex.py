"""Codex itself (``codex exec``, from the npm registry) against DEMI in front of the fakes.

Codex speaks only the Responses API (``wire_api = "responses"``). It is installed once
into a cache folder (``~/.cache/demi/agents/codex-<version>``, or under
``$DEMI_AGENTS_CACHE``) and run non-interactively with a scratch ``HOME`` and
``CODEX_HOME`` whose ``config.toml`` points a ``model_providers`` entry at DEMI's ``/v1``,
every proxy variable pointing at a dead loopback port (nothing leaves the machine; DEMI on
loopback is reached directly through ``NO_PROXY``), stdin closed and a bounded time.

Offered tools, the fake model calls the first one (Codex's ``exec_command``), Codex runs
it and sends its output back as a ``function_call_output``, and the fake answers with
text: the run is a whole agent turn, tool call included, and ends by printing that text.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from src.testing.fakes.launcher import FakeServer, free_port
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import OLLAMA_REPLY

VERSION = "0.169.0"
PACKAGE = f"@openai/codex@{VERSION}"
RUN_TIMEOUT = 180

CONFIG_TOML = """\
model = "demi"
model_provider = "demi"

[model_providers.demi]
name = "DEMI"
base_url = "{base_url}/v1"
wire_api = "responses"
"""


def cache_dir() -> Path:
    base = Path(os.environ.get("DEMI_AGENTS_CACHE")
                or Path.home() / ".cache" / "demi" / "agents")
    return base / f"codex-{VERSION}"


def install() -> Path:
    """The ``codex`` command, installed from the npm registry into the cache if missing."""
    home = cache_dir()
    codex = home / "node_modules" / ".bin" / "codex"
    if not codex.is_file():
        npm = shutil.which("npm")
        assert npm is not None, "Codex comes from the npm registry: install Node.js and npm"
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(home), "--no-audit", "--no-fund", PACKAGE],
            capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0 and codex.is_file(), (
            f"npm install {PACKAGE} failed: {done.stderr.strip()[-500:]}")
    return codex


@pytest.fixture(scope="module")
def codex() -> Path:
    return install()


def offline_env(home: Path) -> dict[str, str]:
    """A scratch HOME and CODEX_HOME; proxies at a dead loopback port, loopback direct."""
    dead = f"http://127.0.0.1:{free_port()}"
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "TERM") if k in os.environ}
    return {
        **keep, "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
        "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead,
        "https_proxy": dead, "http_proxy": dead, "all_proxy": dead,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }


def test_codex_exec_answers_through_demi(
    codex: Path, make_demi: MakeConductor, ollama_fake: FakeServer, tmp_path: Path
) -> None:
    """``codex exec "Say hello"`` exits 0 printing the fake's reply, after a whole tool
    round trip through DEMI's Responses face (Codex's own requests, accepted as sent)."""
    demi = make_demi(level="DEBUG")
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(CONFIG_TOML.format(base_url=demi.url))
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "Say hello"],
        cwd=work, env=offline_env(home), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"codex exited {done.returncode}: {done.stderr[-2000:]}"
    assert OLLAMA_REPLY in done.stdout, done.stdout + done.stderr[-2000:]

    chats = [r["json"] for r in ollama_fake.requests() if r["path"] == "/api/chat"]
    assert len(chats) >= 2, chats
    first, last = chats[0], chats[-1]
    assert first["tools"], "Codex offers its tools"
    names = [t["function"]["name"] for t in first["tools"]]
    assert "exec_command" in names
    assert any("__" in n for n in names), "a namespace tool is offered under flat names"
    assert first["messages"][0]["role"] == "system"  # Codex's developer message
    assert last["messages"][-1]["role"] == "tool"  # the tool's output went back up
    served = [line for line in demi.stderr().splitlines() if "POST /v1/responses" in line]
    assert served and all(" 200 " in line for line in served), served
    assert "dropped hosted tool" in demi.stderr() and "web_search" in demi.stderr()


def test_codex_config_in_the_readme_is_the_one_tested() -> None:
    """The README's Codex config.toml is this test's (with DEMI's default address)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert CONFIG_TOML.format(base_url="http://127.0.0.1:8420") in readme
