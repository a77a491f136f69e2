"""Between an HTTP handler and ``UnifiedLLMInference``: open a reply, drain it, map errors.

Both protocol modules go through here, so the rules live once:

* the LLM layer's errors become :class:`ApiError` (a caller's mistake is a 400, every
  provider failing is a 503 carrying ``AllProvidersFailed``'s text, a closed LLM is a 503
  "shutting down"); anything else is a DEMI bug and reaches the middleware as a 500;
* failover, time to first token and latency are counted in the metrics;
* the upstream stream is always closed, whether the reply finished, broke, or the client
  went away (cancellation included).

The model name is never passed down: each provider uses its own configured model.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, cast

from src.llm.errors import AllProvidersFailed, Closed, RequestError, StreamInterrupted
from src.llm.stream import ReplyStream
from src.llm.types import ChatChunk

from .errors import ApiError
from .state import ConductorState

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


def finish_reason(reason: str | None) -> str:
    """OpenAI's and Ollama's finish reasons are ``stop`` and ``length``; anything else is stop."""
    return reason if reason in FINISH_REASONS else "stop"


async def open_reply(
    state: ConductorState, messages: Sequence[Any], options: Mapping[str, Any]
) -> ReplyStream:
    """Start a reply over the failover chain; ApiError if it cannot start."""
    try:
        reply = await state.llm.open_stream(messages, **options)
    except RequestError as exc:
        status = exc.status if 400 <= exc.status < 500 else 400
        raise ApiError(status, str(exc), code="invalid_request") from None
    except AllProvidersFailed as exc:
        state.metrics.all_failed(exc.errors)
        raise ApiError(503, str(exc), code="all_providers_failed", type="server_error") from None
    except Closed:
        raise ApiError(503, "DEMI is shutting down: send the request again once it is back",
                       code="shutting_down", type="server_error") from None
    state.metrics.reply_opened(
        reply.provider, reply.fallback_used, reply.time_to_first_token, reply.errors
    )
    return reply


def chunks_of(reply: ReplyStream) -> AsyncGenerator[ChatChunk, None]:
    """The reply's chunk iterator, typed so callers can ``aclose()`` it in ``finally``."""
    return cast(AsyncGenerator[ChatChunk, None], reply.__aiter__())


async def close_chunks(chunks: AsyncIterator[ChatChunk], reply: ReplyStream) -> None:
    """Close the iterator (its ``finally`` releases the upstream) and the reply itself."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
    await reply.aclose()


def finished(state: ConductorState, reply: ReplyStream) -> None:
    state.metrics.reply_finished(reply.provider, time.perf_counter() - reply.started)


def interrupted(
    state: ConductorState, reply: ReplyStream, exc: StreamInterrupted, outcome: str
) -> None:
    """Count and log a reply that broke after text; ``outcome`` says what happens next."""
    state.metrics.interrupted(reply.provider, exc.__cause__)
    state.logger.warning("%s reply broke after %d characters; %s", reply.display_name,
                         exc.delivered_chars, outcome)


class Collected:
    """A whole reply, for the non-streaming endpoints."""

    __slots__ = ("final", "reply", "text")

    def __init__(self, reply: ReplyStream, text: str, final: ChatChunk) -> None:
        self.reply = reply
        self.text = text
        self.final = final

    @property
    def model(self) -> str:
        return self.final.model or self.reply.model


async def collect(
    state: ConductorState, messages: Sequence[Any], options: Mapping[str, Any]
) -> Collected:
    """Open and drain a reply. A reply that breaks half way is asked for once more.

    Nothing has reached the client yet, so asking again is invisible to it (the partial
    text is thrown away, never spliced); the broken provider's circuit is open by then,
    so the next attempt goes to the next provider.
    """
    try:
        reply = await open_reply(state, messages, options)
        return await _collect_once(state, reply, "nothing was sent yet, asking again")
    except StreamInterrupted:
        pass
    try:
        reply = await open_reply(state, messages, options)
        return await _collect_once(state, reply, "the client gets a 503")
    except StreamInterrupted as exc:
        raise ApiError(503, str(exc), code="stream_interrupted", type="server_error") from None


async def _collect_once(state: ConductorState, reply: ReplyStream, outcome: str) -> Collected:
    parts: list[str] = []
    final: ChatChunk | None = None
    chunks = chunks_of(reply)
    try:
        async for chunk in chunks:
            if chunk.text:
                parts.append(chunk.text)
            if chunk.done:
                final = chunk
    except StreamInterrupted as exc:
        interrupted(state, reply, exc, outcome)
        raise
    finally:
        await close_chunks(chunks, reply)
    if final is None:  # the stream contract forbids this; say so rather than guess
        raise ApiError(503, f"{reply.display_name} ended the reply without finishing it",
                       code="stream_interrupted", type="server_error")
    finished(state, reply)
    return Collected(reply, "".join(parts), final)
