"""Start, kill and steer fake upstream servers from tests (synchronous API).

The fakes run as *separate processes* because the behaviours DEMI must survive are process-level:
SIGKILL, connection refused, restart on the same port.  The API is synchronous (subprocess and
urllib) so it works the same from plain fixtures and from inside async tests; control calls are
tiny loopback requests with short timeouts, so blocking the event loop briefly is harmless.

    with FakeServer("ollama") as srv:
        srv.control(mode="status", status=503, times=1)
        ...  # point the client at srv.url
        srv.kill(); srv.restart()
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[3]
KINDS = ("ollama", "lmstudio", "engines")


def free_port() -> int:
    """An unused loopback TCP port (the OS picks it; free at the time of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServerError(RuntimeError):
    """The fake could not be started or did not answer a control call."""


class FakeServer:
    """One fake Ollama or LM Studio process on 127.0.0.1.

    ``port=None`` lets the process pick a free port on first start; later restarts reuse it, so
    a client configured with :attr:`url` sees the "same" upstream come back.
    """

    def __init__(
        self,
        kind: str,
        port: int | None = None,
        args: list[str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self.port = port
        self.args = list(args or [])
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # ---- process lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (for LM Studio clients append ``/v1``)."""
        if self.port is None:
            raise FakeServerError("server has no port yet: call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> FakeServer:
        """Spawn the process and wait for its ``READY <port>`` line."""
        if self.is_running():
            raise FakeServerError(f"fake {self.kind} already running on port {self.port}")
        self._reap()
        cmd = [
            sys.executable,
            "-m",
            f"{__package__}.fake_{self.kind}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port or 0),
            "--parent-pid",
            str(os.getpid()),
            *self.args,
        ]
        # stderr goes to a file, not a pipe: nobody drains it while the test runs, and a full
        # pipe would block the server. We read it back only to explain a failed start.
        self._stderr = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._proc = proc
        assert proc.stdout is not None
        try:
            line = self._read_ready_line(proc.stdout)
        finally:
            proc.stdout.close()  # the fake prints nothing after READY
        if not line.startswith("READY "):
            self._reap(signal.SIGKILL, keep_stderr=True)  # reaped first: stderr is then complete
            detail = self._stderr_text()
            self._reap()
            raise FakeServerError(
                f"fake {self.kind} failed to start ({' '.join(cmd)}): "
                f"stdout={line!r} stderr={detail}"
            )
        self.port = int(line.split()[1])
        return self

    def _read_ready_line(self, stream: IO[bytes]) -> str:
        deadline = time.monotonic() + self.start_timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(stream, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    return buf.decode(errors="replace") or "<timeout waiting for READY>"
                chunk = os.read(stream.fileno(), 4096)
                if not chunk:
                    break  # process exited
                buf += chunk
        return buf.decode(errors="replace").strip()

    def _stderr_text(self) -> str:
        """Tail of the process's stderr (kept in a temp file until the process is reaped)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def _reap(self, sig: int | None = None, keep_stderr: bool = False) -> None:
        """Send ``sig`` (if given) and wait, so no zombie or open file is left behind."""
        proc = self._proc
        if proc is not None:
            if sig is not None and proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.poll() is not None:
                self._proc = None
        if self._proc is None and self._stderr is not None and not keep_stderr:
            self._stderr.close()
            self._stderr = None

    def kill(self) -> None:
        """SIGKILL, like an upstream crash: no goodbye, open connections die. Waits for exit."""
        self._reap(signal.SIGKILL)

    def stop(self) -> None:
        """Terminate politely (SIGTERM), escalating to SIGKILL; safe to call twice."""
        self._reap(signal.SIGTERM)

    def restart(self) -> FakeServer:
        """Start again on the same port (killing the current process first if it still runs).

        The new process starts with the command-line defaults: control state does not survive.
        """
        self._reap(signal.SIGKILL)
        return self.start()

    def __enter__(self) -> FakeServer:
        return self if self.is_running() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- control plane -------------------------------------------------------------------------
    def _call(self, method: str, path: str, payload: Any = None, timeout: float = 5.0) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode(errors="replace")
            raise FakeServerError(f"{method} {path} -> {exc.code}: {detail}") from None
        except OSError as exc:  # URLError, refused, timeout: say which fake it was
            raise FakeServerError(f"fake {self.kind} at {self.url} unreachable: {exc}") from exc

    def control(self, **behaviour: Any) -> dict[str, Any]:
        """Merge behaviour/world fields (see the fakes' README.md); returns the new snapshot."""
        return dict(self._call("POST", "/_control", behaviour))

    def config(self) -> dict[str, Any]:
        """Current configuration snapshot."""
        return dict(self._call("GET", "/_control"))

    def reset(self) -> dict[str, Any]:
        """Back to command-line defaults, request log cleared."""
        return dict(self._call("POST", "/_control/reset", {}))

    def requests(self) -> list[dict[str, Any]]:
        """API requests received since the last reset/clear (method, path, query, headers, json)."""
        return list(self._call("GET", "/_control/requests"))

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._call("DELETE", "/_control/requests")

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<FakeServer {self.kind} port={self.port} pid={self.pid} {state}>"
