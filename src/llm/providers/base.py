"""The narrow interface every LLM backend implements.

The router only ever talks to this interface, so Ollama, LM Studio, any OpenAI-compatible
server and the embedded model are interchangeable; adding a backend is a new small class.

Contract:

* ``stream(request)`` is an async iterator of :class:`ChatChunk`, ending with one chunk
  whose ``done`` is True. It raises only :class:`~src.llm.errors.ProviderError` subclasses
  (or :class:`~src.llm.errors.RequestError` for the caller's own mistakes); every foreign
  exception is mapped inside the provider. It enforces the provider's own first-token and
  between-chunk bounds.
* ``chat(request)`` returns the whole reply; the default implementation drains ``stream``
  so both calls share one code path and the same time bounds.
* ``health()`` probes the server and never raises: failures are a ``HealthReport`` with
  ``healthy=False`` and a reason.
* ``close()`` releases sessions; the provider is unusable afterwards.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar

from ...core.config import LLMConfig
from ..errors import CannotExpress, ProviderResponseError
from ..types import ChatChunk, ChatRequest, Embeddings, HealthReport

POOL_LIMIT = 256
"""Connections one provider keeps open to its server at most (one pool per provider)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The network bounds every server-backed provider shares; built once from the config.

    Each provider's first-token bound is its own ``timeout`` key; these are the rest.
    """

    connect: float
    read_idle: float
    health: float

    @classmethod
    def from_config(cls, llm: LLMConfig) -> Timeouts:
        return cls(connect=llm.connect_timeout, read_idle=llm.read_idle_timeout,
                   health=llm.health_check_timeout)


class Provider(abc.ABC):
    """Base class for a backend. Subclasses set the class attributes and implement three methods.

    ``name`` is the configuration key (``ollama``), ``display_name`` is what log lines and
    error messages say (``Ollama``), ``kind`` names the implementation.
    """

    kind: ClassVar[str] = "abstract"
    can_stream: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        display_name: str,
        *,
        model: str | None,
        context_window: int,
        base_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.name = name
        self.display_name = display_name
        self.model = model
        self.context_window = context_window
        self.base_url = base_url
        self.region = region
        self.embedding_model: str | None = None
        """The model ``embed`` uses; None = this provider makes no embeddings (skipped)."""
        self.reported_concurrency: int | None = None
        """How many requests the server says it serves at once (llama.cpp's server:
        ``total_slots`` in ``/props``), learned by its health check; None = it does not say.
        Used as the cap when ``max_concurrency`` is null."""
        self.state_listener: Callable[[], None] | None = None
        """Set by the router: called when the provider's own state changes (an engine it
        runs died or became ready), so health is re-checked now, not at the next interval."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the reply; see the module docstring for the contract."""

    @abc.abstractmethod
    async def health(self) -> HealthReport:
        """Probe the server; never raises."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release network sessions and threads."""

    async def start(self) -> None:
        """Prepare long-lived resources. The default does nothing; sessions open lazily."""
        return None

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 (public API)
        """Wait for a provider that is still starting (a model loading); False if it is not.

        Server-backed providers have nothing to wait for here: their servers load models
        themselves and report slowness as a slow first token.
        """
        return False

    async def embed(self, texts: list[str], model: str) -> Embeddings:
        """One vector per text from ``model``; raises like ``stream`` does."""
        raise CannotExpress("input", f"{self.display_name} makes no embeddings")

    async def warm(self, keep_for: float) -> bool:
        """Load the model and keep it loaded for ``keep_for`` s (``llm.warm_standby``).

        True when the server was asked; never raises. The default (the embedded model,
        which is loaded for as long as its engine runs) has nothing to do.
        """
        return False

    def resolved_model(self, request: ChatRequest) -> str:
        """The model name this provider will use for ``request`` (for reports and logs)."""
        return request.model or self.model or "default"

    async def chat(self, request: ChatRequest) -> ChatChunk:
        """Return the whole reply as one final chunk, by draining ``stream``."""
        parts: list[str] = []
        async for chunk in self.stream(request):
            if chunk.text:
                parts.append(chunk.text)
            if chunk.done:
                return ChatChunk(
                    text="".join(parts),
                    done=True,
                    model=chunk.model,
                    finish_reason=chunk.finish_reason,
                    prompt_tokens=chunk.prompt_tokens,
                    completion_tokens=chunk.completion_tokens,
                    tool_calls=chunk.tool_calls,
                )
        raise ProviderResponseError(self.name, "the reply ended without a final chunk")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.base_url or ''} model={self.model!r}>"


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` on the monotonic clock (latency measurements only)."""
    return time.perf_counter() - start
