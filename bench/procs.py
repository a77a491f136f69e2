"""Gateway processes: start, readiness, CPU and memory counters, stop.

Counters come from the process itself (psutil): CPU is user + system time of the process and
its children, memory is the resident set of the same tree, sampled by a background thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
# Variables that would change what a gateway does; the bench sets the ones it means.
_SCRUBBED_PREFIXES = ("DEMI_", "OLLAMA_", "LMSTUDIO_", "LITELLM_")


class TargetFailed(RuntimeError):
    """A target could not be started or stopped answering; the message says which and why."""


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The bench's environment without gateway settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServiceProcess:
    """One server process whose output goes to a temporary file (read back on failure)."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.started_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ps: psutil.Process | None = None
        self._tree_cache: list[psutil.Process] = []
        self._tree_at = 0.0

    def start(self) -> None:
        self._log = tempfile.TemporaryFile()
        self.started_at = time.perf_counter()
        self._proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._ps = psutil.Process(self._proc.pid)

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _tree(self) -> list[psutil.Process]:
        """The process and its children; the child list is refreshed once a second because
        finding children scans /proc, which would steal time from the load generator."""
        if self._ps is None:
            return []
        now = time.monotonic()
        if now - self._tree_at > 1.0:
            self._tree_at = now
            try:
                self._tree_cache = [self._ps, *self._ps.children(recursive=True)]
            except psutil.Error:
                self._tree_cache = [self._ps]
        return self._tree_cache

    def cpu_seconds(self) -> float:
        """User + system CPU of the process tree so far."""
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def log_tail(self, limit: int = 3000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-limit:]

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 5 s; safe to call twice."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._proc = None
        self._ps = None
        self._tree_cache, self._tree_at = [], 0.0


class PeakRss:
    """Samples the resident memory of some processes in a thread; keeps each one's peak."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.peak: dict[str, int] = {}
        self._watched: dict[str, ServiceProcess] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def watch(self, key: str, proc: ServiceProcess) -> None:
        with self._lock:
            self._watched[key] = proc

    def unwatch(self, key: str) -> None:
        with self._lock:
            self._watched.pop(key, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock:
                watched = list(self._watched.items())
            for key, proc in watched:
                rss = proc.rss_bytes()
                if rss > self.peak.get(key, 0):
                    self.peak[key] = rss
