"""``ReplyStream``: one reply in flight, from a provider that has already started answering.

The router hands one of these out only after the provider produced its first text (or
finished), so everything before that point can still fail over invisibly. From then on
the reply belongs to this provider: a failure becomes :class:`StreamInterrupted`, never a
silent splice of another provider's words onto a partial answer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable

from .errors import ProviderError, RequestError, StreamInterrupted
from .types import ChatChunk, ChatResult

Finish = Callable[["ReplyStream", ChatChunk | None, ProviderError | None], None]
"""Called once when the reply ends: with the final chunk, or with the error that broke it."""


class ReplyStream:
    """Async-iterate it for :class:`ChatChunk` objects; the last one has ``done=True``."""

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

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChatChunk]:
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield self._emit(first)
                if first.done:
                    return
            while True:
                try:
                    chunk = await self._rest.__anext__()
                except StopAsyncIteration:
                    # Providers end with a done chunk; ending without one is a broken reply.
                    raise ProviderError(self.provider, "the reply ended early") from None
                except RequestError as exc:
                    raise ProviderError(self.provider, str(exc)) from exc
                yield self._emit(chunk)
                if chunk.done:
                    return
        except ProviderError as exc:
            self._finish(None, exc)
            raise StreamInterrupted(self.display_name, exc.reason, self._delivered) from exc
        finally:
            await self.aclose()

    def _emit(self, chunk: ChatChunk) -> ChatChunk:
        if chunk.text:
            self._parts.append(chunk.text)
            self._delivered += len(chunk.text)
        if chunk.done:
            if chunk.model is None:
                chunk = dataclasses.replace(chunk, model=self.model)
            self._final = chunk
            self._finish(chunk, None)
        return chunk

    def _finish(self, final: ChatChunk | None, error: ProviderError | None) -> None:
        if not self._finished:
            self._finished = True
            self._on_finish(self, final, error)

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
        )

    async def collect(self) -> ChatResult:
        """Drain the stream and return the whole reply."""
        async for _ in self:
            pass
        return self.result()

    async def aclose(self) -> None:
        """Stop reading from the provider (safe to call more than once)."""
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()
