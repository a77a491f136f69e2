"""The OpenAI face's request body, declared once: ``POST /v1/chat/completions``.

Field types come from ``bodies.py``; a malformed field is a 400 in OpenAI's error shape
with ``param`` naming it. Fields the model does not declare pass through to the provider as
sampling options (``frequency_penalty``, ``logit_bias`` ...), except the ones meaningless
for a relay (:data:`IGNORED`).
"""

from __future__ import annotations

from typing import Annotated, Any

from ..bodies import (
    Flag,
    Inputs,
    Int,
    Messages,
    ModelName,
    Number,
    PositiveInt,
    RequestBody,
    Stop,
    Tools,
    expect,
    pass_through,
)
from ..http.errors import ApiError

IGNORED = frozenset({
    "user", "store", "metadata", "service_tier", "parallel_tool_calls", "logit_bias",
    "logprobs", "top_logprobs", "modalities", "audio", "prediction",
})
"""Accounts, storage, billing tiers, log-probabilities: accepted and dropped (a local server
has no accounts, and DEMI relays text, not token log-probabilities)."""


class StreamOptions(RequestBody):
    include_usage: Flag | None = None


class ChatCompletionBody(RequestBody):
    """``POST /v1/chat/completions``."""

    model: ModelName
    messages: Messages
    stream: Flag | None = None
    stream_options: StreamOptions | None = None
    n: Int | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    seed: Int | None = None
    stop: Stop | None = None
    tools: Tools = None
    functions: Any = None
    tool_choice: Annotated[
        Any, expect('"auto", "none", "required" or {"type": "function", "function": {...}}',
                    lambda v: v is None or v in ("auto", "none", "required")
                    or isinstance(v, dict)),
    ] = None
    response_format: Annotated[
        Any, expect('{"type": "text" | "json_object" | "json_schema", ...}',
                    lambda v: v is None or (isinstance(v, dict) and v.get("type") in (
                        "text", "json_object", "json_schema"))),
    ] = None

    def options(self) -> dict[str, Any]:
        """The LLM options: sampling fields set, unknown fields passed through."""
        if self.n is not None and self.n != 1:
            raise ApiError(400, f"n must be 1: DEMI returns exactly one choice (got {self.n})",
                           param="n", code="unsupported_value")
        if self.functions or (self.model_extra and self.model_extra.get("function_call")):
            raise ApiError(400, "functions and function_call are OpenAI's deprecated tool API:"
                           " send tools and tool_choice instead", param="functions",
                           code="unsupported_parameter")
        options = pass_through(self.model_extra, IGNORED)
        for key in ("temperature", "top_p", "seed", "stop", "tools", "tool_choice",
                    "response_format"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        return options


class EmbeddingsBody(RequestBody):
    """``POST /v1/embeddings``: ``model`` names no model here, each provider uses its own
    configured ``embedding_model``; ``input`` as token ids is not taken (text only)."""

    model: ModelName
    input: Inputs
    encoding_format: Annotated[
        str | None, expect('"float" or "base64"', lambda v: v in (None, "float", "base64")),
    ] = None
    dimensions: Any = None

    def texts(self) -> list[str]:
        if self.dimensions is not None:
            raise ApiError(400, "dimensions is not supported: the vector size is the "
                           "embedding model's own", param="dimensions",
                           code="unsupported_parameter")
        return [self.input] if isinstance(self.input, str) else list(self.input)


class CompletionBody(RequestBody):
    """``POST /v1/completions`` (OpenAI's legacy text completion), run as a chat whose one
    user message is the prompt. What a chat cannot do is refused, naming the field."""

    model: ModelName
    prompt: Inputs
    stream: Flag | None = None
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    seed: Int | None = None
    stop: Stop | None = None
    n: Int | None = None
    echo: Flag | None = None
    suffix: Any = None
    best_of: Int | None = None

    def text(self) -> str:
        prompt = self.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ApiError(400, "prompt must be one string: DEMI returns exactly one "
                               "choice", param="prompt", code="unsupported_value")
            prompt = prompt[0]
        for name, refused in (("echo", self.echo), ("suffix", self.suffix),
                              ("best_of", self.best_of not in (None, 1)),
                              ("n", self.n not in (None, 1))):
            if refused:
                raise ApiError(400, f"{name} is not supported: /v1/completions runs as a "
                               "chat, which has no equivalent", param=name,
                               code="unsupported_parameter")
        return prompt

    def options(self) -> dict[str, Any]:
        options = pass_through(self.model_extra, IGNORED)
        for key in ("temperature", "top_p", "seed", "stop", "max_tokens"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        return options
