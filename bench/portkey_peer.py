"""Portkey's open-source AI gateway as a peer: the same Ollama → OpenAI-compatible fallback.

``@portkey-ai/gateway`` runs on Node.js. The bench installs it from the npm registry into a
cache folder (``~/.cache/demi/bench/portkey-<version>``, once), with the versions of Hono
its own lockfile was built against: the newest ``@hono/node-server`` and ``hono`` make every
streamed answer fail with 500 "TypeError: immutable". Its ``start-server.js`` listens on
every interface; ``portkey_loopback.mjs`` (preloaded with ``node --import``) makes it
listen on 127.0.0.1 only.

Its stream handler sleeps 25 ms before the first event it forwards. That is the gateway as
shipped, so the ``Portkey`` column measures it; a second column, ``Portkey (no stream
sleep)``, runs a copy of ``start-server.js`` with that one sleep removed, to be fair to the
rest of its design.

Routing is Portkey's config header (``x-portkey-config``): strategy ``fallback`` over an
``ollama`` target and an ``openai`` target at the fakes' addresses, as DEMI's chain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.client import OPENAI, Endpoint
from bench.procs import REPO_ROOT, ServiceProcess, clean_env
from src.testing.fakes.launcher import free_port

VERSION = "1.15.2"
PINNED = {"@portkey-ai/gateway": VERSION, "@hono/node-server": "1.13.5", "hono": "4.9.7"}
PORTKEY, PORTKEY_NO_SLEEP = "Portkey", "Portkey (no stream sleep)"
SLEEP = "await new Promise((e=>setTimeout(e,25)))"
LOOPBACK = REPO_ROOT / "bench" / "portkey_loopback.mjs"


def cache_dir() -> Path:
    base = Path(os.environ.get("DEMI_BENCH_CACHE") or Path.home() / ".cache" / "demi" / "bench")
    return base / f"portkey-{VERSION}"


def install() -> tuple[Path | None, str]:
    """The gateway's installed folder (installing it once), or None and why it is skipped."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "Node.js and npm are not installed"
    home = cache_dir()
    server = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not server.is_file():
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(json.dumps({
            "name": "demi-bench-portkey", "private": True,
            "dependencies": PINNED,
            "overrides": {k: v for k, v in PINNED.items() if k != "@portkey-ai/gateway"},
        }, indent=2))
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=home, capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0 or not server.is_file():
            return None, f"npm install failed: {done.stderr.strip()[-300:]}"
    return server.parent, ""


def no_sleep_copy(build: Path) -> Path | None:
    """``start-server.js`` without its 25 ms first-event sleep, beside the original."""
    original = build / "start-server.js"
    text = original.read_text(encoding="utf-8")
    if text.count(SLEEP) != 1:
        return None  # another build: the fair column would not be what it says
    copy = build / "start-server-nosleep.js"
    copy.write_text(text.replace(SLEEP, "void 0"), encoding="utf-8")
    return copy


def config(ollama_url: str, lmstudio_url: str, lmstudio_model: str, model: str) -> str:
    """The ``x-portkey-config`` header: Ollama first, the OpenAI-compatible server next."""
    return json.dumps({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "ollama", "custom_host": ollama_url,
             "override_params": {"model": model}},
            {"provider": "openai", "custom_host": f"{lmstudio_url}/v1", "api_key": "lm-studio",
             "override_params": {"model": lmstudio_model}},
        ],
    }, separators=(",", ":"))


def process(name: str, server: Path, workdir: Path) -> tuple[ServiceProcess, str]:
    """The gateway's process on a free loopback port, and its base URL."""
    port = free_port()
    node = shutil.which("node") or "node"
    argv = [node, "--import", LOOPBACK.as_uri(), str(server), f"--port={port}", "--headless"]
    env = clean_env({"NODE_ENV": "production"})
    return ServiceProcess(name, argv, env, workdir), f"http://127.0.0.1:{port}"


def endpoints(base: str, header: str, model: str) -> dict[str, Endpoint]:
    """Portkey serves the OpenAI API only (no Ollama face)."""
    return {OPENAI: Endpoint(f"{base}/v1/chat/completions", model, OPENAI,
                             headers={"x-portkey-config": header})}
