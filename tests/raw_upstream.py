"""A bare HTTP/1.1 upstream on loopback, for the failures the fake servers cannot stage.

The fakes (``src/testing/fakes``) break chats on command, not Ollama's model-management
answers; the forwarding tests need a pull answer held or cut at a chosen chunk, the
connections counted and the moment the client hangs up seen. This server runs in the test's
own loop and writes the bytes each test scripts, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType

Answer = Callable[[str, str, "asyncio.StreamReader", "asyncio.StreamWriter"], Awaitable[bool]]
"""``answer(method, path, reader, writer)`` writes one response; True keeps the connection."""

NDJSON_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``b""`` is the last one)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def small(status: int, body: bytes = b"{}") -> bytes:
    """A whole JSON response with a Content-Length (keeps the connection reusable)."""
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class RawUpstream:
    """``async with RawUpstream(answer) as up:`` serves at ``up.url`` until the block ends."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.client_left = asyncio.Event()
        """Set when a client closed its connection (a reader saw EOF)."""

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.client_left.set()
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(h.split(":", 1)[1]) for h in lines[1:]
                               if h.lower().startswith("content-length:")), 0)
                await reader.readexactly(length)
                self.requests.append((method, path))
                if not await self._answer(method, path, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.client_left.set()
        finally:
            writer.close()
            self._tasks.discard(task)


async def wait_for_hang_up(reader: asyncio.StreamReader, upstream: RawUpstream) -> None:
    """Hold the response open until the client closes the connection."""
    await reader.read()
    upstream.client_left.set()
