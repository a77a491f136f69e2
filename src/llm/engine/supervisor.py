"""DEMI's side of the engine process: start it, watch it, say why it died, restart it.

States, one job each::

    starting ──ready──▶ ready ──dies──▶ restarting ──backoff──▶ starting
        │                                   ▲
        └──── fails before ready ──────────┘   (the reason is kept: ``start_failed``)

* A child that dies or hangs is restarted after a backoff that doubles each time it dies
  without having served for ``stable_after`` seconds, up to ``backoff_max``: a broken build
  or a missing file costs a restart every half minute, never a hot crash loop.
* Why it died is worded for a person: a signal by name and meaning, with the fix where one
  is known (SIGILL: the build does not fit this CPU). The child's own last output lines are
  kept for the reason of a failure that is not a signal.
* The child's standard input is a pipe only this process holds (see :mod:`.child`), so the
  child exits when DEMI does, however DEMI ends.
* ``listener`` is called on every state change, so the owner can re-check health at once
  instead of at the next periodic check.

The command that starts the child is injectable, so the supervision logic is tested with
small stand-in children (one that exits at once, one that hangs) as well as the real one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.tasks import cancel_and_wait

PROJECT_ROOT = Path(__file__).resolve().parents[3]

SIGNAL_MEANINGS: dict[int, str] = {
    signal.SIGILL: (
        "illegal instruction; this llama.cpp build does not fit this CPU, "
        "rebuild it with GGML_NATIVE=OFF (see README)"
    ),
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "arithmetic error",
    signal.SIGKILL: "killed; out of memory, or killed by hand (see dmesg)",
    signal.SIGTERM: "terminated",
}


def describe_exit(returncode: int) -> str:
    """A person's words for how a process ended.

    >>> describe_exit(-11)
    'SIGSEGV (segmentation fault)'
    >>> describe_exit(3)
    'exit code 3'
    """
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        meaning = SIGNAL_MEANINGS.get(-returncode)
        return f"{name} ({meaning})" if meaning else name
    return f"exit code {returncode}"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart a dead engine, and when to give up waiting for one to start."""

    backoff: float
    backoff_max: float
    stable_after: float
    start_timeout: float

    def next_delay(self, previous: float | None, served_for: float) -> float:
        """The first delay, or double the last, unless the engine had served long enough."""
        if previous is None or served_for >= self.stable_after:
            return self.backoff
        return min(self.backoff_max, previous * 2)


CommandBuilder = Callable[[int, int], Sequence[str]]
"""Builds the child's argv from (status fd, listening socket fd)."""


class EngineSupervisor:
    """Runs one engine child at a time and keeps it running until :meth:`close`."""

    def __init__(
        self,
        command: CommandBuilder,
        policy: RestartPolicy,
        *,
        logger: logging.Logger,
        label: str = "Embedded model",
        listener: Callable[[], None] | None = None,
    ) -> None:
        self._command = command
        self.policy = policy
        self.log = logger
        self.label = label
        self.listener = listener
        self.state = "idle"  # idle | starting | ready | restarting | closed
        self.reason: str | None = None
        self.start_failed = False  # the last attempt died before it was ever ready
        self.missing_file = False
        self.url: str | None = None
        self.pid: int | None = None
        self.model: str | None = None
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._kill_reason: str | None = None

    # -- public --------------------------------------------------------------------------
    def start(self) -> None:
        """Start supervising in the background (idempotent)."""
        if self._task is None and self.state != "closed":
            self._set("starting")
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(), name="demi-engine-supervisor"
            )

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 (public API)
        """Wait for ``ready``; False at the deadline or as soon as a start attempt fails."""
        self.start()
        deadline = time.monotonic() + timeout
        while self.state != "ready":
            if self.state == "closed" or (self.state == "restarting" and self.start_failed):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        return True

    def kill(self, reason: str) -> None:
        """End a child that is hung; the supervisor restarts it (reason goes in the log)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._kill_reason = reason
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def wait_exit(self, timeout: float) -> None:  # noqa: ASYNC109 (bounded wait)
        """Wait at most ``timeout`` seconds for a dying child to be recorded as dead."""
        deadline = time.monotonic() + timeout
        while self.state == "ready" and (remaining := deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def alive(self) -> bool:
        """Whether the current child process is still running."""
        return self._proc is not None and self._proc.returncode is None

    async def close(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and the supervisor. Idempotent."""
        if self.state == "closed":
            return
        self._set("closed", "the embedded provider is closed")
        task, self._task = self._task, None
        died = await cancel_and_wait(task)
        if died is not None:
            self.log.error("The engine supervisor had died of %s (a DEMI bug)",
                           type(died).__name__, exc_info=died)
        await self._stop_child()
        await asyncio.sleep(0)  # the status pipe's transport closes its file on the next tick

    # -- the loop ------------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay: float | None = None
        while self.state != "closed":
            ready_at = await self._run_once()
            if self.state == "closed":
                return
            served = 0.0 if ready_at is None else time.monotonic() - ready_at
            delay = self.policy.next_delay(delay, served)
            self.restarts += 1
            self.log.warning("%s; restarting in %gs", self.reason, delay)
            await asyncio.sleep(delay)
            if self.state != "closed":
                self._set("starting", self.reason)

    async def _run_once(self) -> float | None:
        """One child's life; returns when it ended, with the time it became ready (if it did)."""
        self._tail.clear()
        self._kill_reason = None
        try:
            proc, status, transport, port = await self._spawn()
        except OSError as exc:
            self.start_failed = True
            self._set("restarting", f"{self.label} process could not start: {exc}")
            return None
        self._proc, self.pid = proc, proc.pid
        output = asyncio.ensure_future(self._drain_output(proc))
        ready_at: float | None = None
        event: dict[str, Any] | None = None
        try:
            event = await self._read_status(status)
            if event is not None and event.get("event") == "ready":
                ready_at = time.monotonic()
                self.model = str(event.get("model") or self.model or "")
                self.url = f"http://127.0.0.1:{port}"
                self.start_failed = False
                self.missing_file = False
                self.log.info(
                    "%s %s loaded in %.2fs and passed its self-check (engine pid %d)",
                    self.label, self.model, float(event.get("load_s", 0)), proc.pid,
                )
                self._set("ready", None)
            elif event is not None and event.get("event") == "failed":
                self.missing_file = bool(event.get("missing"))
            await proc.wait()
            await asyncio.wait([output], timeout=0.2)  # its last words, for the reason
        finally:
            transport.close()
            await cancel_and_wait(output)
        self._died(proc.returncode, event, ready_at is not None)
        return ready_at

    def _died(self, code: int | None, event: dict[str, Any] | None, was_ready: bool) -> None:
        how = describe_exit(code if code is not None else 0)
        if self._kill_reason is not None:
            reason = f"{self.label} process was stopped: {self._kill_reason}"
        elif event is not None and event.get("event") == "failed":
            reason = f"{self.label} failed to start: {event.get('reason')}"
        elif was_ready:
            reason = f"{self.label} process died: {how}"
        else:
            detail = f" ({self._tail[-1]})" if self._tail and (code or 0) > 0 else ""
            reason = f"{self.label} process died while starting: {how}{detail}"
        self.start_failed = not was_ready
        self.url = None
        self._set("restarting", reason)

    async def _spawn(
        self,
    ) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader, asyncio.BaseTransport, int]:
        """Bind the socket, make the status pipe, start the child with both inherited."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            port = sock.getsockname()[1]
            read_fd, write_fd = os.pipe()
            try:
                env = dict(os.environ)
                env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p
                )
                env.setdefault("PYTHONUNBUFFERED", "1")
                proc = await asyncio.create_subprocess_exec(
                    *self._command(write_fd, sock.fileno()),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd, sock.fileno()),
                    env=env,
                    start_new_session=True,  # a Ctrl-C in DEMI's terminal is DEMI's to handle
                )
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
        finally:
            sock.close()  # the child holds its own copy
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        return proc, reader, transport, port

    async def _read_status(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        """The child's first status line, or None if it died or hung before writing one."""
        try:
            async with asyncio.timeout(self.policy.start_timeout):
                line = await reader.readline()
        except TimeoutError:
            self.kill(f"not ready within {self.policy.start_timeout:g}s")
            return None
        try:
            event = json.loads(line) if line else None
        except ValueError:
            return None
        return event if isinstance(event, dict) else None

    async def _drain_output(self, proc: asyncio.subprocess.Process) -> None:
        """Forward the child's output to DEBUG (it never carries message content at INFO).

        Read in blocks, not lines: a line longer than the stream's limit must not stop the
        draining, or the child would block on a full pipe.
        """
        assert proc.stdout is not None
        pending = b""
        while True:
            block = await proc.stdout.read(65536)
            if not block:
                break
            *lines, pending = (pending + block).split(b"\n")
            pending = pending[-4096:]
            for raw in lines:
                self._note(raw)
        self._note(pending)

    def _note(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            self._tail.append(line[:300])
            self.log.debug("engine: %s", line[:2000])

    async def _stop_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(3):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _set(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason = state, reason
        self._changed.set()
        if self.listener is not None:
            self.listener()


def child_command(settings: dict[str, Any]) -> CommandBuilder:
    """The real engine: ``python -m <package>.llm.engine.child`` with these settings."""

    def build(status_fd: int, listen_fd: int) -> list[str]:
        payload = {**settings, "status_fd": status_fd, "listen_fd": listen_fd}
        return [sys.executable, "-m", f"{__package__}.child", json.dumps(payload)]

    return build
