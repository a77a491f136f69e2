"""The Ollama face's request bodies, declared once: ``/api/chat``, ``/api/generate``,
``/api/show``.

Field types come from ``bodies.py``; a malformed field is a 400 ``{"error": "..."}`` naming
it. Ollama's rules: ``stream`` absent means *stream*; ``options.num_predict`` becomes
``max_tokens`` (-1 and -2 mean no limit), ``options.temperature`` and ``options.stop`` map
directly, and every other option passes through to the provider.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import model_validator

from ..bodies import (
    Flag,
    Inputs,
    Int,
    Messages,
    ModelName,
    Number,
    Prompt,
    RequestBody,
    Stop,
    Text,
    Tools,
    check_finite,
    expect,
    pass_through,
)
from ..http.errors import ApiError


class Options(RequestBody):
    """Ollama's ``options`` object."""

    num_predict: Int | None = None
    temperature: Number | None = None
    stop: Stop | None = None

    def as_chat_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for key, value in pass_through(self.model_extra).items():
            check_finite(value, f"options.{key}")
            options[key] = value  # top_p, top_k, seed, num_ctx, ...
        if self.num_predict is not None and self.num_predict > 0:
            options["max_tokens"] = self.num_predict
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.stop is not None:
            options["stop"] = self.stop
        return options


OptionsField = Annotated[
    Options | None, expect("an object", lambda v: v is None or isinstance(v, dict))
]


class _Request(RequestBody):
    model: ModelName
    stream: Flag | None = None
    options: OptionsField = None
    format: Annotated[
        Any, expect('"json" or a JSON schema object',
                    lambda v: v is None or v in ("", "json") or isinstance(v, dict)),
    ] = None
    keep_alive: Annotated[
        Any, expect("a duration (a number of seconds or a string like \"5m\")",
                    lambda v: v is None or (isinstance(v, (int, float, str))
                                            and not isinstance(v, bool))),
    ] = None
    think: Any = None

    @property
    def streams(self) -> bool:
        """Ollama streams unless told ``"stream": false``."""
        return self.stream is not False

    def chat_options(self) -> dict[str, Any]:
        """Sampling options plus the top-level fields every provider translates itself."""
        options = self.options.as_chat_options() if self.options is not None else {}
        if self.format:
            options["format"] = self.format
        for key in ("keep_alive", "think"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return options


class ChatBody(_Request):
    """``POST /api/chat``."""

    messages: Messages
    tools: Tools = None

    def chat_options(self) -> dict[str, Any]:
        options = super().chat_options()
        if self.tools:
            options["tools"] = self.tools
        return options


class GenerateBody(_Request):
    """``POST /api/generate``: one prompt, an optional system text and images."""

    prompt: Text
    system: Text | None = None
    images: Annotated[
        list[Any] | None,
        expect("an array of base64 strings", lambda v: v is None or isinstance(v, list)),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _empty_prompt_is_missing(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("prompt") in ("", None):
            data = {k: v for k, v in data.items() if k != "prompt"}
        return data

    def messages(self) -> list[dict[str, Any]]:
        """The prompt as a chat; what a chat cannot say is refused, naming the field."""
        extra = self.model_extra or {}
        for name in ("raw", "suffix", "template", "context"):
            if extra.get(name):
                raise ApiError(400, f"{name} is not supported: /api/generate runs as a chat "
                               "over the failover chain, which has no equivalent")
        user: dict[str, Any] = {"role": "user", "content": self.prompt}
        if self.images:
            user["images"] = self.images
        return [{"role": "system", "content": self.system}, user] if self.system else [user]


class LoadBody(_Request):
    """``/api/chat`` without messages, ``/api/generate`` without a prompt: load or unload."""


class EmbedBody(RequestBody):
    """``POST /api/embed``: ``input`` is a text or a list of texts."""

    model: ModelName
    input: Inputs
    truncate: Flag | None = None
    keep_alive: Any = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class LegacyEmbeddingsBody(RequestBody):
    """``POST /api/embeddings`` (Ollama's older call): one ``prompt``."""

    model: ModelName
    prompt: Prompt


class ShowBody(RequestBody):
    """``POST /api/show``: ``name`` is the older spelling of ``model``."""

    model: ModelName

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("model") is None and isinstance(
            data.get("name"), str
        ):
            data = {**data, "model": data["name"]}
        return data
