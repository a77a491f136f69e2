"""The conductor as a real process, for end-to-end tests.

:class:`ConductorProcess` starts ``python -m src.conductor serve --port N`` in a scratch
directory, configured only through environment
variables and a YAML file, so nothing from the developer's shell or ``.env`` leaks in.
Readiness is a poll of ``GET /health``, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from src.testing.fakes.launcher import REPO_ROOT, free_port
from tests.waiting import wait_until_sync

START_TIMEOUT = 20.0
OLLAMA_MODEL = "llama3.2:1b"
LMSTUDIO_MODEL = "qwen2.5-7b-instruct"
OLLAMA_REPLY = "Hello from fake-ollama."
LMSTUDIO_REPLY = "Hello from fake-lmstudio."
HI = [{"role": "user", "content": "hi"}]

# Short probe spacing so a restarted primary is noticed quickly; long health interval so
# nothing is re-checked behind a test's back except through the breaker's probes.
CONFIG_YAML = """\
llm:
  probe_interval: 0.05
  probe_backoff_max: 0.2
  health_check_timeout: 2
  connect_timeout: 1
  read_idle_timeout: 10
  ollama: {timeout: 10}
  lmstudio: {timeout: 10}
conductor:
  shutdown_grace: %(grace)s
logging:
  level: %(level)s
"""


def entry_command(port: int) -> list[str]:
    return [sys.executable, "-m", "src.conductor", "serve", "--port", str(port)]


class ConductorProcess:
    """One conductor process on a free loopback port."""

    def __init__(
        self, workdir: Path, ollama_url: str, lmstudio_url: str, *,
        grace: float = 10, level: str = "INFO", env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "demi.yaml"
        config.write_text(CONFIG_YAML % {"grace": grace, "level": level}, encoding="utf-8")
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("DEMI_", "OLLAMA_", "LMSTUDIO_"))}
        self.env = {
            **clean,
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "OLLAMA_BASE_URL": ollama_url,
            "LMSTUDIO_BASE_URL": lmstudio_url,
            "DEMI_EMBEDDED_ENABLED": "false",
            "DEMI_DISCOVER": "false",  # an engine on this machine must not join the chain
            "DEMI_PORT": str(self.port),
            "DEMI_CONFIG": str(config),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._err: IO[bytes] | None = None

    def start(self) -> ConductorProcess:
        self._out = open(self.workdir / "stdout.log", "w+b")
        self._err = open(self.workdir / "stderr.log", "w+b")
        self.proc = subprocess.Popen(
            entry_command(self.port), cwd=self.workdir, env=self.env,
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
        )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"conductor exited with {self.proc.returncode}: {self.stderr()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        try:
            wait_until_sync(answers, "the conductor to answer /health", within=START_TIMEOUT)
        except AssertionError as exc:
            if "timed out" not in str(exc):
                raise
            raise AssertionError(f"{exc}: {self.stderr()}") from None

    def get_json(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return json.loads(exc.read())

    def post_json(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stdout(self) -> str:
        return _read(self._out)

    def stderr(self) -> str:
        return _read(self._err)

    def stop(self) -> None:
        """SIGTERM, escalating to SIGKILL; closes the log files (safe to call twice)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self._out, self._err):
            if f is not None and not f.closed:
                f.close()


def _read(f: IO[bytes] | None) -> str:
    if f is None or f.closed:
        return ""
    f.flush()
    f.seek(0)
    return f.read().decode(errors="replace")
