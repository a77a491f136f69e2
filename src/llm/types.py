"""Value types that cross module boundaries: requests, replies, chunks, health reports.

They are small frozen dataclasses (``slots=True``) because one is built per request or per
streamed chunk on the hot path; pydantic is kept for configuration, where validation
matters more than speed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Message = Mapping[str, Any]
"""A chat message as the OpenAI and Ollama APIs shape it: ``{"role": ..., "content": ...}``."""

VALID_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What one provider is asked to do. Built by the router, once per attempt.

    ``model`` is None to use the provider's configured model; ``options`` carries extra
    sampling options (``top_p``, ``seed``, ...) passed through to the server.
    """

    messages: Sequence[Message]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asks for; ``arguments`` is a JSON text (OpenAI's spelling)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One piece of a streamed reply.

    Every chunk but the last has ``done=False`` and some ``text`` (possibly empty). The last
    has ``done=True`` and carries the finish reason and the token counts: a provider's chunk
    has the server's report (None when it sent none); the chunk a :class:`ReplyStream`
    hands on has DEMI's calibrated estimate in place of a missing count
    (``usage_estimated``), never a made-up zero.
    """

    text: str
    done: bool = False
    model: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    """Only on the last chunk: the whole calls the model made (finish reason ``tool_calls``)."""
    usage_estimated: bool = False
    """The token counts (one or both) are DEMI's estimate: the server reported none."""


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole reply with where it came from: what ``UnifiedLLMInference.chat_detailed`` returns.

    ``fallback_used`` is True when a provider other than the first in the chain served it.
    ``latency`` is seconds from the call to the last byte; ``time_to_first_token`` seconds
    to the first text (None for an empty reply). Token counts are the provider's own report
    or, when it sent none (llama.cpp's server in streams), DEMI's calibrated estimate
    (``usage_estimated`` is then True).
    """

    text: str
    provider: str
    model: str
    fallback_used: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    latency: float
    time_to_first_token: float | None = None
    finish_reason: str | None = None
    attempts: tuple[tuple[str, str], ...] = ()
    """(provider, reason) for each provider that failed before this one answered."""
    tool_calls: tuple[ToolCall, ...] = ()
    usage_estimated: bool = False


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome of one health probe of one provider."""

    healthy: bool
    latency: float
    error: str | None = None
    models: tuple[str, ...] = ()
    model_present: bool | None = None
    loading: bool = False
    """True while the provider is starting a model: not healthy yet, but not broken."""


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One vector per input text, from ``provider``'s embedding ``model``."""

    vectors: list[list[float]]
    model: str
    provider: str
    prompt_tokens: int | None = None
    fallback_used: bool = False
