"""One attempt: a provider asked for one request, until its first chunk is in.

Every place that asks a provider (the main walk, a hedge, the wait for a loading model,
the continuation of a broken stream, the embeddings walk) does the same three things:
open the provider's reply, wait for its first chunk, and close the upstream connection on
every way out unless the reply is handed on to the caller. :class:`Attempt` is that, as an
async context manager, the way httpx's ``client.stream()`` is: its exit closes the
upstream and never suppresses anything, ``CancelledError`` included.

Waiting is separate from raising: :meth:`Attempt.wait` stores the outcome (:attr:`first`
or :attr:`error`) instead of raising DEMI's errors, so a race of two attempts can look at
both without either one's failure cancelling the other. Only cancellation and DEMI's own
bugs propagate out of it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from ..errors import CannotExpress, ProviderError, ProviderRejected, RequestError
from ..providers.base import Provider
from ..types import ChatChunk, ChatRequest

T = TypeVar("T")


def starts_reply(chunk: ChatChunk) -> bool:
    """A chat reply has started once it carries text, or ends (a tool call, an empty answer,
    or a continuation cut right at the end of the answer)."""
    return bool(chunk.text) or chunk.done


async def aclose(items: AsyncIterator[Any]) -> None:
    """Close an async iterator that has ``aclose`` (a provider's stream generator)."""
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()


class Serving(AsyncIterator[T]):
    """A handed-off reply that ends its provider's count of requests in flight when closed."""

    __slots__ = ("_items", "_release")

    def __init__(self, items: AsyncIterator[T], release: Callable[[], None]) -> None:
        self._items = items
        self._release = release

    def __aiter__(self) -> Serving[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        return self._items.__anext__()

    async def aclose(self) -> None:
        try:
            await aclose(self._items)
        finally:
            self._release()


class Attempt(Generic[T]):
    """``async with Attempt(...) as att: await att.wait()``; then ``att.first`` or ``att.error``.

    ``items`` opens the provider's reply (called on entry); ``ready`` says which item is the
    first one that counts (for chat: text or the end). :meth:`hand_off` gives the open
    iterator to the caller, after which the exit leaves it open.
    """

    def __init__(
        self,
        name: str,
        provider: Provider,
        items: Callable[[], AsyncIterator[T]],
        *,
        request: ChatRequest | None = None,
        ready: Callable[[T], bool] = lambda _: True,
        serve: Callable[[], Callable[[], None]] | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        self.request = request
        self._open = items
        self._ready = ready
        self._items: AsyncIterator[T] | None = None
        self._handed_off = False
        self._serve = serve
        self._release: Callable[[], None] | None = None
        self.started = 0.0
        self.first_at: float | None = None
        self.first: T | None = None
        self.error: ProviderError | RequestError | None = None

    async def __aenter__(self) -> Attempt[T]:
        self.started = time.perf_counter()
        if self._serve is not None:
            self._release = self._serve()
        try:
            self._items = self._open().__aiter__()
        except BaseException:
            self._released()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handed_off:
            return
        try:
            if self._items is not None:
                await aclose(self._items)  # the server stops generating; nothing is swallowed
        finally:
            self._released()

    def _released(self) -> None:
        if self._release is not None:
            self._release()

    async def wait(self) -> None:
        """Read until the first item that counts; the outcome lands in first or error."""
        assert self._items is not None, "use the attempt as an async context manager"
        try:
            while True:
                try:
                    item = await self._items.__anext__()
                except StopAsyncIteration:
                    raise ProviderError(self.name, "the reply ended before any text") from None
                if self._ready(item):
                    self.first = item
                    self.first_at = time.perf_counter()
                    return
        except (ProviderError, RequestError) as exc:
            self.error = exc

    @property
    def answered(self) -> bool:
        return self.first is not None

    @property
    def ttft(self) -> float | None:
        """Seconds from this attempt's request to its first item."""
        return None if self.first_at is None else self.first_at - self.started

    def hand_off(self) -> AsyncIterator[T]:
        """The open reply, now the caller's to read and close (closing it ends the count
        of the request in flight, when the attempt keeps one)."""
        assert self._items is not None and self.first is not None
        self._handed_off = True
        if self._release is None:
            return self._items
        return Serving(self._items, self._release)

    # -- what the outcome was ----------------------------------------------------------
    @property
    def skipped(self) -> CannotExpress | None:
        """This provider cannot express the request: nobody's fault, the next one may."""
        return self.error if isinstance(self.error, CannotExpress) else None

    @property
    def rejected(self) -> ProviderRejected | None:
        """The server refused this request (4xx): its answer, not its failure."""
        return self.error if isinstance(self.error, ProviderRejected) else None

    @property
    def failure(self) -> ProviderError | None:
        """The provider could not serve it (down, slow, broken, loading)."""
        error = self.error
        if isinstance(error, ProviderError) and not isinstance(error, ProviderRejected):
            return error
        return None
