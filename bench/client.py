"""The load generator: pooled aiohttp sessions, cheap reply checks, bounded request loops.

Replies are checked with byte searches, not JSON parsing: the client shares two cores with
the servers it measures, so its own cost per request must stay small and equal for every
target. A reply counts as good when the status is 200, some text arrived and (streams) the
protocol's end marker came last.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

import aiohttp

from bench.stats import Sample

OPENAI = "openai"
OLLAMA = "ollama"
ANTHROPIC = "anthropic"
RESPONSES = "responses"
"""OpenAI's Responses API (``/v1/responses``): DEMI's translated face, no upstream speaks it."""
PROMPT = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

_CONTENT = re.compile(rb'"content"\s*:\s*"(?!")')  # a content field with at least one char
_TEXT = re.compile(rb'"text"\s*:\s*"(?!")')  # Anthropic: a text (block or delta) with a char
_NDJSON_DONE = re.compile(rb'"done"\s*:\s*true')
_SSE_DONE = b"data: [DONE]"
_MESSAGE_STOP = b'data: {"type":"message_stop"'
# The Responses API: text is output_text (whole) or delta (streamed); the end is an event.
_OUTPUT_TEXT = re.compile(rb'"output_text"\s*:\s*"(?!")')
_DELTA = re.compile(rb'"delta"\s*:\s*"(?!")')
_COMPLETED = b"event: response.completed\n"
_TEXT_OF = {OPENAI: _CONTENT, OLLAMA: _CONTENT, ANTHROPIC: _TEXT, RESPONSES: _DELTA}
"""The text a streamed chunk carries, per API (a whole Responses reply: _OUTPUT_TEXT)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one API of one target is reached, and the model name it expects."""

    url: str
    model: str
    api: str  # OPENAI, OLLAMA, ANTHROPIC or RESPONSES
    headers: Mapping[str, str] | None = None
    """Headers beyond the bench's own (a peer's routing config)."""

    def body(self, stream: bool) -> bytes:
        if self.api == RESPONSES:
            return json.dumps({"model": self.model, "input": PROMPT, "stream": stream,
                               "store": False}).encode()
        body: dict[str, object] = {"model": self.model, "messages": PROMPT, "stream": stream}
        if self.api == ANTHROPIC:
            body["max_tokens"] = 256  # required by the Messages API; above the fakes' 32
        return json.dumps(body).encode()


class Client:
    """One pooled session; ``request`` never raises, it returns a failed :class:`Sample`."""

    def __init__(self, timeout: float = 60.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=5.0)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # keepalive below uvicorn's 5 s so a pooled connection is never reused as the
            # server closes it; limit above the highest concurrency so nothing queues here.
            connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=4.0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, ep: Endpoint, stream: bool) -> Sample:
        data = ep.body(stream)
        headers = HEADERS if ep.headers is None else {**HEADERS, **ep.headers}
        start = time.perf_counter()
        try:
            async with self.session.post(ep.url, data=data, headers=headers) as resp:
                provider = resp.headers.get("X-DEMI-Provider")
                if resp.status != 200:
                    text = (await resp.read())[:160].decode("utf-8", "replace")
                    return Sample(False, time.perf_counter() - start, provider=provider,
                                  error=f"HTTP {resp.status}: {text}")
                if not stream:
                    raw = await resp.read()
                    elapsed = time.perf_counter() - start
                    text = _OUTPUT_TEXT if ep.api == RESPONSES else _TEXT_OF[ep.api]
                    ok = text.search(raw) is not None
                    return Sample(ok, elapsed, provider=provider,
                                  error=None if ok else "reply without text")
                return await _read_stream(resp, ep.api, start, provider)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Sample(False, time.perf_counter() - start, error=type(exc).__name__)


async def _read_stream(
    resp: aiohttp.ClientResponse, api: str, start: float, provider: str | None
) -> Sample:
    ttft: float | None = None
    head = b""
    tail = b""
    text = _TEXT_OF[api]
    keep = 8192 if api == RESPONSES else 2048  # the completed event carries the response
    async for chunk in resp.content.iter_any():
        if ttft is None:
            head += chunk
            if text.search(head):
                ttft = time.perf_counter() - start
                head = b""
        tail = (tail + chunk)[-keep:]
    elapsed = time.perf_counter() - start
    last = tail.rstrip().rsplit(b"\n", 1)[-1]
    if api == RESPONSES:
        _, marker, after = tail.rpartition(_COMPLETED)
        done = bool(marker) and after.count(b"\n\n") == 1 and after.endswith(b"\n\n")
    elif api == OPENAI:
        done = last.startswith(_SSE_DONE)
    elif api == ANTHROPIC:
        done = last.startswith(_MESSAGE_STOP)
    else:
        done = bool(_NDJSON_DONE.search(last))
    if ttft is None or not done:
        why = "no text" if ttft is None else "stream ended without its end marker"
        return Sample(False, elapsed, provider=provider, error=why)
    return Sample(True, elapsed, ttft, provider)


Call = Callable[[], Awaitable[Sample]]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside a measured run (its pauses would land on one target's
    samples at random); the collection happens after, where nothing is timed."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


async def run_count(call: Call, count: int, concurrency: int, max_seconds: float) -> list[Sample]:
    """``count`` requests from ``concurrency`` workers (closed loop), stopping at the time cap."""
    samples: list[Sample] = []
    remaining = iter(range(count))
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        for _ in remaining:
            if time.perf_counter() > deadline:
                return
            samples.append(await call())

    with gc_paused():
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def run_for(call: Call, concurrency: int, seconds: float) -> tuple[list[Sample], float]:
    """Workers send back to back for ``seconds``; returns the samples and the elapsed time."""
    samples: list[Sample] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            samples.append(await call())

    with gc_paused():
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return samples, elapsed
