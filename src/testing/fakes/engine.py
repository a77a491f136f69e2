"""Behaviour engine shared by the fake servers: reply tokens, counting, and the failure modes.

The protocol modules (``fake_ollama``, ``openai_api``, ``fake_lmstudio``) only know how to *spell*
a chunk, a final chunk or an error in their wire format.  Everything about *when* bytes go out
(delays, hanging, cutting the socket, stopping after N chunks) lives here once, so both fakes fail
in exactly the same, predictable way and a test written against one mode means the same thing
for both servers.

Token accounting is deliberately simple and deterministic so tests can assert exact numbers:

* the reply is split into "words with their leading whitespace" (``"Hello"``, ``" from"``...),
  one streamed chunk each; completion tokens = number of chunks sent;
* prompt tokens = for every chat message ``4 + len(text) // 4``; for a bare prompt
  (``/api/generate``, ``/v1/completions``) ``4 + len(prompt + system) // 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web

from .control import Hanging

if TYPE_CHECKING:
    from .control import Behaviour

ErrorFactory = Callable[[int, "str | None"], web.Response]


def message_text(content: Any) -> str:
    """Text of a message ``content``: a string, or OpenAI content parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def prompt_tokens_for_messages(messages: Any) -> int:
    """Deterministic prompt size: ``4 + len(text) // 4`` per message."""
    if not isinstance(messages, list):
        return 0
    return sum(
        4 + len(message_text(m.get("content"))) // 4 for m in messages if isinstance(m, dict)
    )


def prompt_tokens_for_text(*texts: Any) -> int:
    """Deterministic prompt size of a bare prompt: ``4 + len(joined text) // 4``."""
    return 4 + len("".join(t for t in texts if isinstance(t, str))) // 4


def positive_int(value: Any) -> int | None:
    """A usable token limit, or None (absent, -1 'infinite', 0, or garbage)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def cap_tokens(tokens: tuple[str, ...], limit: int | None) -> tuple[tuple[str, ...], str]:
    """Apply ``max_tokens``/``num_predict``; the stop reason becomes ``length`` when it bites."""
    if limit is not None and limit < len(tokens):
        return tokens[:limit], "length"
    return tokens, "stop"


def dumps(obj: Any) -> str:
    """Compact JSON like Go's encoder and OpenAI's servers emit."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def retry_after_value(seconds: float) -> str:
    """``Retry-After`` header text: integral seconds print without a fraction."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


async def hang_forever() -> NoReturn:
    """Never answer.  The runner enables handler cancellation, so this ends (by cancellation)
    exactly when the client goes away, keeping the connection open until then."""
    Hanging.now += 1
    try:
        await asyncio.Event().wait()
    finally:
        Hanging.now -= 1
    raise AssertionError("unreachable")


async def cut_connection(request: web.Request) -> NoReturn:
    """Close the TCP connection under the response.

    ``transport.close()`` flushes what was already written and then sends FIN, so the client
    deterministically receives the chunks sent so far and then an incomplete HTTP body (no final
    chunk, no terminating zero-length chunk) - the same failure as an upstream that dies mid-reply.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    await hang_forever()


async def preamble(
    request: web.Request,
    behaviour: Behaviour,
    *,
    error: ErrorFactory,
    loading: Callable[[], web.Response | None] | None = None,
    streaming: bool = False,
) -> web.StreamResponse | None:
    """Steps common to every governed route before a normal answer is built.

    Returns a finished error response, never returns (hang), or None to carry on.
    """
    if behaviour.first_token_delay:
        await asyncio.sleep(behaviour.first_token_delay)
    mode = behaviour.mode
    if mode == "hang" and (not streaming or behaviour.chunks_before_failure == 0):
        await hang_forever()
    if mode == "status":
        resp = error(behaviour.status, behaviour.message)
        if behaviour.retry_after is not None:
            resp.headers["Retry-After"] = retry_after_value(behaviour.retry_after)
        return resp
    if mode == "loading" and loading is not None:
        return loading()  # None for Ollama: loading there only delays (first_token_delay)
    return None


async def answer_whole(
    request: web.Request,
    behaviour: Behaviour,
    *,
    body: Callable[[], bytes],
    content_type: str,
    error: ErrorFactory,
    generation_chunks: int = 0,
) -> web.StreamResponse:
    """Answer with one complete body (non-streaming generation or a health/list route).

    ``chunk_delay`` is charged once per token that a streaming reply would have sent, so a slow
    server is slow in both styles.  Failure modes: ``midstream_error`` becomes a 500 in the
    protocol's error shape, ``malformed`` sends the first half of the JSON, ``cut`` closes the
    socket (before any byte when ``after_chunks`` is 0, otherwise after headers and half the body).
    """
    if behaviour.chunk_delay and generation_chunks:
        await asyncio.sleep(behaviour.chunk_delay * generation_chunks)
    mode = behaviour.mode
    if mode == "midstream_error":
        return error(500, behaviour.message)
    data = body()
    headers = {"Content-Type": content_type}
    if mode == "malformed":
        return web.Response(body=data[: len(data) // 2], headers=headers)
    if mode == "cut":
        if behaviour.chunks_before_failure == 0:
            await cut_connection(request)
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        await cut_connection(request)
    return web.Response(body=data, headers=headers)


@dataclass
class StreamPlan:
    """The wire pieces of one streamed reply, spelled by a protocol module.

    ``head`` goes out together with the first content chunk (e.g. OpenAI's role chunk);
    ``chunks`` are the per-token pieces that ``after_chunks`` counts; ``tail`` builds the final
    piece(s) when they are due (so durations can be measured); ``error_line`` and
    ``malformed_line`` are what ``midstream_error`` and ``malformed`` send after the good chunks.
    """

    content_type: str
    chunks: Sequence[bytes]
    tail: Callable[[], bytes]
    error_line: bytes
    malformed_line: bytes
    head: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


FAILING_STREAM_MODES = frozenset({"hang", "midstream_error", "cut", "malformed"})


async def answer_stream(
    request: web.Request, behaviour: Behaviour, plan: StreamPlan
) -> web.StreamResponse:
    """Stream a reply, failing after ``after_chunks`` content chunks when the mode says so.

    Hot path (mode ok, no chunk delay): the whole body goes out in one ``write_eof`` call - the
    same bytes and framing for the client, one body write instead of one per token for the
    benchmark that uses these fakes as its fast upstream.
    """
    resp = web.StreamResponse(headers={"Content-Type": plan.content_type, **plan.headers})
    await resp.prepare(request)
    mode = behaviour.mode
    failing = mode in FAILING_STREAM_MODES
    chunks = plan.chunks[: behaviour.chunks_before_failure] if failing else plan.chunks
    delay = behaviour.chunk_delay
    if not failing and not delay:
        await resp.write_eof(plan.head + b"".join(chunks) + plan.tail())
        return resp
    pieces = list(chunks)
    if plan.head:
        pieces = [plan.head + pieces[0], *pieces[1:]] if pieces else [plan.head]
    for i, piece in enumerate(pieces):
        if i and delay:
            await asyncio.sleep(delay)
        await resp.write(piece)
    if pieces and delay:
        await asyncio.sleep(delay)
    if mode == "hang":
        await hang_forever()
    if mode == "cut":
        await cut_connection(request)
    if mode == "midstream_error":
        resp.force_close()
        await resp.write_eof(plan.error_line)
    elif mode == "malformed":
        await resp.write_eof(plan.malformed_line)
    else:
        await resp.write_eof(plan.tail())
    return resp


def base_arg_parser(
    description: str, default_model: str, default_reply: str
) -> argparse.ArgumentParser:
    """Command-line options common to both fakes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=0, help="0 picks a free port (reported in READY)"
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help=f"advertised model (repeatable; default {default_model})",
    )
    parser.add_argument("--reply", default=default_reply, help="reply text, streamed word by word")
    parser.add_argument(
        "--reply-tokens",
        type=int,
        default=None,
        metavar="N",
        help="fixed N-token reply instead of --reply (benchmarks)",
    )
    parser.add_argument(
        "--max-recorded",
        type=int,
        default=10_000,
        help="request log size (oldest entries are dropped)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is gone (the launcher passes its pid: no orphaned fakes)",
    )
    return parser


async def _exit_with_parent(parent_pid: int) -> None:
    # A fake never exits on its own; if the test run that started it dies without cleanup
    # (SIGKILL, crash), we must not leave a server squatting on the port forever.
    original_ppid = os.getppid()
    while os.getppid() == original_ppid:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass  # exists, owned by someone else
        await asyncio.sleep(0.5)
    os._exit(0)


async def _serve(app: web.Application, host: str, port: int, parent_pid: int | None) -> None:
    # handler_cancellation: a handler (notably "hang") is cancelled as soon as its client
    # disconnects, so hung requests do not pile up in a long-running fake.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    actual_port = runner.addresses[0][1]
    print(f"READY {actual_port}", flush=True)
    if parent_pid is not None:
        await _exit_with_parent(parent_pid)
    await asyncio.Event().wait()


def serve(app: web.Application, args: argparse.Namespace) -> None:
    """Listen, print ``READY <port>`` (the launcher's start signal) and serve until killed."""
    try:
        asyncio.run(_serve(app, args.host, args.port, args.parent_pid))
    except KeyboardInterrupt:
        sys.exit(0)
