"""``ReplyStream``: one reply in flight, from a provider that has already started answering.

The router hands one of these out only after the provider produced its first text (or
finished), so everything before that point can still fail over invisibly. After that,
what a break means depends on ``llm.mid_stream``:

* ``continue`` (streams): the walker's ``resume`` asks the next provider to continue the
  same answer (the conversation plus the text so far as a trailing assistant message) and
  the reply carries on from that provider's first chunk: one reply, nothing inserted. Only
  when no provider is left does the caller get :class:`StreamInterrupted`.
* ``error`` (and every whole-reply caller, who must get an answer from one provider): the
  break becomes :class:`StreamInterrupted` at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ..errors import ProviderError, RequestError, StreamInterrupted
from ..types import ChatChunk, ChatResult

Finish = Callable[[ChatChunk | None, ProviderError | None], None]
"""Called once per provider when its part ends: with the final chunk, or the error."""


@dataclass(frozen=True, slots=True)
class Continuation:
    """A provider that has started continuing a broken reply (its first chunk in hand)."""

    provider: str
    display_name: str
    first: ChatChunk
    rest: AsyncIterator[ChatChunk]
    on_finish: Finish


Resume = Callable[[str, frozenset[str]], Awaitable["Continuation | None"]]
"""``resume(text_so_far, providers_already_used)``: the next provider continuing, or None."""


class ReplyStream:
    """Async-iterate it for :class:`ChatChunk` objects; the last one has ``done=True``.

    It holds an open upstream connection: use it as ``async with reply:`` (or call
    :meth:`aclose`) so a reply dropped half way is closed at once, not whenever the garbage
    collector finds it.
    """

    def __init__(
        self,
        *,
        provider: str,
        display_name: str,
        model: str,
        fallback_used: bool,
        attempts: tuple[tuple[str, str], ...],
        first: ChatChunk,
        errors: tuple[ProviderError, ...] = (),
        rest: AsyncIterator[ChatChunk],
        started: float,
        first_at: float,
        on_finish: Finish,
        resume: Resume | None = None,
        hedged: bool = False,
        degraded: tuple[str, ...] = (),
        spilled_from: str | None = None,
        estimate_usage: Callable[[str], tuple[int, int]] | None = None,
    ) -> None:
        self.provider = provider
        self.display_name = display_name
        self.model = model
        self.fallback_used = fallback_used
        self.attempts = attempts
        self.errors = errors
        """The failures (typed) of the providers tried before this one."""
        self.started = started
        self.time_to_first_token = (first_at - started) if first.text else None
        self._first: ChatChunk | None = first
        self._rest = rest
        self._on_finish = on_finish
        self._parts: list[str] = []
        self._final: ChatChunk | None = None
        self._finished = False
        self._delivered = 0
        self._resume = resume
        self._iterator: AsyncGenerator[ChatChunk, None] | None = None
        self.providers: list[str] = [provider]
        """Every provider that served part of this reply, in order (more than one only
        after a mid-stream continuation)."""
        self.display_names: list[str] = [display_name]
        self.hedged = hedged
        """Whether this reply came from a hedge (the provider before it was too slow)."""
        self._estimate_usage = estimate_usage
        self.degraded = degraded
        self.spilled_from = spilled_from
        """The provider this request would have gone to first, passed over because it was
        at its ``max_concurrency`` (a spillover: not a failure, not a fallback)."""
        """Request fields the serving provider could not express and served without
        (``tool_choice`` on Ollama), because no provider could express them."""

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        if self._iterator is None:
            self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncGenerator[ChatChunk, None]:
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield self._emit(first)
                if first.done:
                    return
            while True:
                try:
                    chunk = await self._next()
                except ProviderError as exc:
                    self._finish(None, exc)
                    nxt = await self._continue()
                    if nxt is None:
                        raise StreamInterrupted(
                            self.display_names[-1], exc.reason, self._delivered
                        ) from exc
                    chunk = nxt
                yield self._emit(chunk)
                if chunk.done:
                    return
        except ProviderError as exc:
            self._finish(None, exc)
            raise StreamInterrupted(
                self.display_names[-1], exc.reason, self._delivered) from exc
        finally:
            await self._close_upstream()

    async def _next(self) -> ChatChunk:
        """The current provider's next chunk; every way it can break is a ProviderError."""
        name = self.providers[-1]
        try:
            return await self._rest.__anext__()
        except StopAsyncIteration:
            # Providers end with a done chunk; ending without one is a broken reply.
            raise ProviderError(name, "the reply ended early") from None
        except RequestError as exc:
            raise ProviderError(name, str(exc)) from exc

    async def _continue(self) -> ChatChunk | None:
        """Hand the reply to the next provider that continues it; its first chunk, or None.

        Only once text reached the caller (before that the walker already failed over) and
        only with a ``resume`` (mid_stream: continue, streaming callers).
        """
        if self._resume is None or not self._parts:
            return None
        await self._close_upstream()  # release the broken connection before the next one
        nxt = await self._resume(self.text, frozenset(self.providers))
        if nxt is None:
            return None
        self.providers.append(nxt.provider)
        self.display_names.append(nxt.display_name)
        self._rest = nxt.rest
        self._on_finish = nxt.on_finish
        self._finished = False
        return nxt.first

    def _emit(self, chunk: ChatChunk) -> ChatChunk:
        if chunk.text:
            self._parts.append(chunk.text)
            self._delivered += len(chunk.text)
        if chunk.done:
            if chunk.model is None:
                chunk = dataclasses.replace(chunk, model=self.model)
            self._finish(chunk, None)  # the server's own counts, for stats and calibration
            chunk = self._with_usage(chunk)
            self._final = chunk
        return chunk

    def _with_usage(self, final: ChatChunk) -> ChatChunk:
        """``final`` with DEMI's estimate for a token count the server did not report."""
        if self._estimate_usage is None or (
                final.prompt_tokens is not None and final.completion_tokens is not None):
            return final
        prompt, completion = self._estimate_usage("".join(self._parts))
        return dataclasses.replace(
            final, usage_estimated=True,
            prompt_tokens=prompt if final.prompt_tokens is None else final.prompt_tokens,
            completion_tokens=(completion if final.completion_tokens is None
                               else final.completion_tokens))

    def _finish(self, final: ChatChunk | None, error: ProviderError | None) -> None:
        if not self._finished:
            self._finished = True
            self._on_finish(final, error)

    @property
    def text(self) -> str:
        """The text received so far (all of it once the stream is done)."""
        return "".join(self._parts)

    def result(self) -> ChatResult:
        """The whole reply as a :class:`ChatResult`; call after the stream is done."""
        if self._final is None:
            raise RuntimeError("result() called before the reply finished")
        final = self._final
        return ChatResult(
            text=self.text,
            provider=self.provider,
            model=final.model or self.model,
            fallback_used=self.fallback_used,
            prompt_tokens=final.prompt_tokens,
            completion_tokens=final.completion_tokens,
            latency=time.perf_counter() - self.started,
            time_to_first_token=self.time_to_first_token,
            finish_reason=final.finish_reason,
            attempts=self.attempts,
            tool_calls=final.tool_calls,
            usage_estimated=final.usage_estimated,
        )

    async def collect(self) -> ChatResult:
        """Drain the stream and return the whole reply."""
        async for _ in self:
            pass
        return self.result()

    async def __aenter__(self) -> ReplyStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and close the upstream connection (safe to call more than once)."""
        if self._iterator is not None:
            await self._iterator.aclose()  # its ``finally`` closes the upstream
        await self._close_upstream()

    async def _close_upstream(self) -> None:
        close = getattr(self._rest, "aclose", None)
        if close is not None:
            await close()
