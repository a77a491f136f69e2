"""Between an HTTP handler and ``UnifiedLLMInference``: the one reply pipeline.

Both protocol modules go through :func:`answer`, handing it the encoders of their wire
format (``encoders.py``), so the rules live once:

* the LLM layer's errors pass up to the middleware, which answers each from one registry
  (``http/errors.py``: a caller's mistake is a 400, every provider failing a 503 carrying
  ``AllProvidersFailed``'s text, a closed LLM a 503 "shutting down"); anything else is a
  DEMI bug and reaches the middleware as a 500;
* failover, time to first token and latency are counted in the metrics;
* the upstream stream is always closed, whether the reply finished, broke, or the client
  went away (cancellation included);
* a stream that breaks after it started is continued by the next provider in the same
  response (``llm.mid_stream: continue``; the LLM layer does it, the final chunk then
  names every provider that served, under ``demi.providers``); when none is left it ends
  with the protocol's error event (never a cut answer passing as complete); a DEMI bug
  there is logged with its traceback.

The model name is never passed down: each provider uses its own configured model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from ..llm import (
    ChatChunk,
    Embeddings,
    ReplyStream,
    StreamInterrupted,
)
from .http.errors import JSON_TYPE, ApiError, internal_error, log_bug
from .http.state import ConductorState


class Collected:
    """A whole reply (``relay.collect`` builds it), for the whole-reply encoders."""

    __slots__ = ("final", "reply", "text")

    def __init__(self, reply: ReplyStream, text: str, final: ChatChunk) -> None:
        self.reply = reply
        self.text = text
        self.final = final

    @property
    def model(self) -> str:
        return self.final.model or self.reply.model



class StreamEncoder(Protocol):
    """Bytes for one streamed reply; one instance per reply."""

    content_type: str
    served_by: tuple[str, ...]
    """Set before :meth:`final` when several providers served (a mid-stream continuation):
    the final chunk names them in a ``demi.providers`` field."""

    def text(self, text: str) -> bytes:
        """A piece of the answer."""

    def final(self, chunk: ChatChunk) -> bytes:
        """The last chunk (it may carry text too), and whatever ends the stream."""

    def error(self, err: ApiError) -> bytes:
        """A terminal error event for a reply that broke after it started."""


_dumps = json.JSONEncoder(separators=(",", ":")).encode
WholeEncoder = Callable[[Collected], bytes]
WORKLOAD_HEADER = "X-DEMI-Workload"
StreamEncoderFactory = Callable[[ReplyStream], StreamEncoder]
BeforeEnd = Callable[[], Awaitable[None]]
"""Run once the reply is whole and encoded, before the client hears that it ended (the
Responses face stores the response there, so a client that sends the next turn the moment
it has the last event finds it)."""


async def answer(
    state: ConductorState, request: web.Request, messages: Sequence[Any],
    options: Mapping[str, Any], *, stream: StreamEncoderFactory | None, whole: WholeEncoder,
    whole_type: str = JSON_TYPE, before_end: BeforeEnd | None = None,
) -> web.StreamResponse:
    """Serve one chat request: streamed with ``stream``'s encoder if given, else whole."""
    workload = request.headers.get(WORKLOAD_HEADER)
    if workload:  # routing.strategy affinity: the caller names the kind of work
        options = {**options, "workload": workload}
    if stream is not None:
        reply = await open_reply(state, messages, options)
        return await stream_reply(state, request, reply, stream(reply), before_end)
    got = await collect(state, messages, options)
    body = whole(got)
    if before_end is not None:
        await before_end()
    return web.Response(
        body=body, headers=state.headers(got.reply.provider, got.reply.fallback_used,
                                         whole_type, got.reply.degraded,
                                         got.reply.spilled_from),
    )


async def stream_reply(
    state: ConductorState, request: web.Request, reply: ReplyStream, encoder: StreamEncoder,
    before_end: BeforeEnd | None = None,
) -> web.StreamResponse:
    """Write ``reply`` as ``encoder`` says, chunk by chunk; the one stream skeleton."""
    resp = web.StreamResponse(
        headers=state.headers(reply.provider, reply.fallback_used, encoder.content_type,
                              reply.degraded, reply.spilled_from)
    )
    async with reply:  # the upstream is closed on every way out, cancellation included
        try:
            await _write(resp, request, reply, encoder, before_end)
        except StreamInterrupted as exc:
            interrupted(state, reply, exc, "the client gets an error event, not a cut answer")
            err = ApiError(502, str(exc), code="stream_interrupted", type="server_error")
            await _end_with_error(resp, encoder.error(err))
        except (ConnectionResetError, BrokenPipeError):
            state.logger.debug("Client went away during a %s stream", reply.display_name)
        except Exception as exc:
            if not resp.prepared:
                raise  # nothing sent yet: the middleware answers with a proper error
            log_bug(state.logger, exc, f"while streaming a {reply.display_name} reply")
            err = internal_error(exc, "while streaming; the answer is incomplete")
            await _end_with_error(resp, encoder.error(err))
        else:
            finished(state, reply)
    return resp


async def _write(
    resp: web.StreamResponse, request: web.Request, reply: ReplyStream,
    encoder: StreamEncoder, before_end: BeforeEnd | None,
) -> None:
    await resp.prepare(request)
    async for chunk in reply:
        if chunk.done:
            if len(reply.providers) > 1:  # continued mid-stream: say who served it
                encoder.served_by = tuple(reply.providers)
            last = encoder.final(chunk)
            if before_end is not None:
                await before_end()
            await resp.write_eof(last)
            return
        if chunk.text:
            await resp.write(encoder.text(chunk.text))
    raise StreamInterrupted(reply.display_name, "the reply ended early", 0)


async def _end_with_error(resp: web.StreamResponse, event: bytes) -> None:
    """A terminal error event and the end of the body.

    The HTTP response itself ends cleanly, so the client's pooled connection stays usable.
    Best effort: the client may already be gone.
    """
    if not resp.prepared:
        return
    try:
        await resp.write_eof(event)
    except (ConnectionResetError, BrokenPipeError):
        pass


async def open_reply(
    state: ConductorState, messages: Sequence[Any], options: Mapping[str, Any],
    *, continuable: bool = True,
) -> ReplyStream:
    """Start a reply over the failover chain (the LLM layer's errors pass up as they are)."""
    reply = await state.llm.open_stream(messages, continuable=continuable, **options)
    state.metrics.reply_opened(
        reply.provider, reply.fallback_used, reply.time_to_first_token, reply.errors
    )
    return reply


def finished(state: ConductorState, reply: ReplyStream) -> None:
    state.metrics.reply_finished(reply.provider, time.perf_counter() - reply.started,
                                 reply.providers[1:])


def interrupted(
    state: ConductorState, reply: ReplyStream, exc: StreamInterrupted, outcome: str
) -> None:
    """Count and log a reply that broke after text; ``outcome`` says what happens next."""
    state.metrics.interrupted(reply.provider, exc.__cause__)
    state.logger.warning("%s reply broke after %d characters; %s", reply.display_name,
                         exc.delivered_chars, outcome)


async def collect(
    state: ConductorState, messages: Sequence[Any], options: Mapping[str, Any]
) -> Collected:
    """Open and drain a reply. A reply that breaks half way is asked for once more.

    Nothing has reached the client yet, so asking again is invisible to it (the partial
    text is thrown away, never spliced); the broken provider's circuit is open by then,
    so the next attempt goes to the next provider.
    """
    try:
        reply = await open_reply(state, messages, options, continuable=False)
        return await _collect_once(state, reply, "nothing was sent yet, asking again")
    except StreamInterrupted:
        pass
    reply = await open_reply(state, messages, options, continuable=False)
    return await _collect_once(state, reply, "the client gets a 503")


async def _collect_once(state: ConductorState, reply: ReplyStream, outcome: str) -> Collected:
    parts: list[str] = []
    final: ChatChunk | None = None
    async with reply:
        try:
            async for chunk in reply:
                if chunk.text:
                    parts.append(chunk.text)
                if chunk.done:
                    final = chunk
        except StreamInterrupted as exc:
            interrupted(state, reply, exc, outcome)
            raise
    if final is None:  # the stream contract forbids this; say so rather than guess
        raise ApiError(503, f"{reply.display_name} ended the reply without finishing it",
                       code="stream_interrupted", type="server_error")
    finished(state, reply)
    return Collected(reply, "".join(parts), final)


def embeddings_reply(state: ConductorState, got: Embeddings, obj: dict[str, Any]) -> web.Response:
    """An embeddings answer (``obj`` in the face's shape) with the provider headers."""
    headers = state.headers(got.provider, got.fallback_used, JSON_TYPE)
    return web.Response(body=_dumps(obj).encode(), headers=headers)
