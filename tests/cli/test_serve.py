"""``serve``: how the CLI hands the configuration to ``src.conductor.server.serve``."""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from src.conductor.cli.main import app
from src.core.config import DemiConfig
from src.testing.fakes.launcher import free_port
from tests.cli.helpers import HANG_GUARD, Demi

SERVER = "src.conductor.http.server"


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No DEMI settings from the developer's shell or .env, and no log handler left behind."""
    for name in list(os.environ):
        if name.startswith(("DEMI_", "OLLAMA_", "LMSTUDIO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEMI_EMBEDDED_ENABLED", "false")
    monkeypatch.chdir(tmp_path)
    yield
    demi_logger = logging.getLogger("demi")
    for handler in list(demi_logger.handlers):
        demi_logger.removeHandler(handler)


@pytest.fixture
def stub_server(monkeypatch: pytest.MonkeyPatch, isolated: None) -> list[dict[str, Any]]:
    """Replace the server module with one whose serve() records its call and returns 7."""
    calls: list[dict[str, Any]] = []

    async def serve(config: DemiConfig, logger: logging.Logger, **kwargs: Any) -> int:
        calls.append({"config": config, "logger": logger, "kwargs": kwargs})
        return 7

    module = types.ModuleType(SERVER)
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, SERVER, module)
    return calls


def test_no_command_means_serve(stub_server: list[dict[str, Any]]) -> None:
    """No command at all runs serve(config, logger) and exits with its return code."""
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 7, result.output
    (call,) = stub_server
    assert isinstance(call["config"], DemiConfig)
    assert call["config"].conductor.port == 8420
    assert call["logger"].name == "demi"
    assert call["kwargs"] == {}


def test_flags_become_config_overrides(stub_server: list[dict[str, Any]]) -> None:
    """--host/--port/--ollama-url/--lmstudio-url/--no-fallback/--provider reach the config."""
    args = [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "9001",
        "--ollama-url",
        "http://o:1",
        "--lmstudio-url",
        "http://l:2",
        "--no-fallback",
        "--provider",
        "lmstudio",
        "--log-level",
        "debug",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 7, result.output
    config: DemiConfig = stub_server[0]["config"]
    assert (config.conductor.host, config.conductor.port) == ("0.0.0.0", 9001)
    assert config.llm.ollama.base_url == "http://o:1"
    assert config.llm.lmstudio.base_url == "http://l:2"
    assert config.llm.enable_fallback is False
    assert config.llm.provider == "lmstudio"
    assert config.logging.level == "DEBUG"


def test_options_before_no_command(stub_server: list[dict[str, Any]]) -> None:
    """`python -m src.conductor --port N` serves on N (options without a command)."""
    result = CliRunner().invoke(app, ["--port", "9002"])
    assert result.exit_code == 7, result.output
    assert stub_server[0]["config"].conductor.port == 9002


def test_bad_port_exits_2(stub_server: list[dict[str, Any]]) -> None:
    """An out-of-range port is a configuration error naming conductor.port; serve never runs."""
    result = CliRunner().invoke(app, ["serve", "--port", "70000"])
    assert result.exit_code == 2
    assert "conductor.port" in result.output
    assert stub_server == []


def _read_until(proc: subprocess.Popen[str], marker: str) -> str:
    """Stdout up to the line containing ``marker`` (a hang guard, not a timing check)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + HANG_GUARD
    seen = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while marker not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise AssertionError(f"no {marker!r} from the server; stdout so far: {seen!r}")
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"server exited ({proc.wait()}); stdout: {seen!r}")
            seen += line
    return seen


def test_real_server_serves_and_stops_on_sigint(demi: Demi) -> None:
    """`python -m src.conductor --port N` answers /health and exits 0 on SIGINT."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.conductor", "--port", str(port)],
        cwd=demi.cwd,
        env=demi.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_until(proc, "listening on")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            assert resp.status == 200
            json.loads(resp.read())
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=HANG_GUARD)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
