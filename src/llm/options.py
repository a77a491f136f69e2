"""What callers pass to ``chat``: their messages and options, checked once.

Bad input is the caller's mistake, so it raises :class:`RequestError` before any provider
is called (it must not count against a provider's health, nor fail over). Messages are
copied once here so no later step can change the caller's list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestError
from .types import VALID_ROLES, Message


def validate_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """A clean copy of ``messages``, or RequestError saying exactly what is wrong."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise RequestError("messages must be a list of {role, content} objects")
    if not messages:
        raise RequestError("messages must not be empty: send at least one message")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RequestError(f"messages[{i}] must be an object with role and content")
        role = message.get("role")
        if not isinstance(role, str) or role not in VALID_ROLES:
            raise RequestError(
                f"messages[{i}].role is {role!r}; expected one of {sorted(VALID_ROLES)}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(f"messages[{i}].content must be a string")
        out.append(dict(message))
    return out


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """Per-call overrides. ``model`` is a name for every provider, or a name per provider."""

    model: str | Mapping[str, str] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    workload: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def model_for(self, provider: str) -> str | None:
        if isinstance(self.model, Mapping):
            return self.model.get(provider)
        return self.model


def parse_options(options: Mapping[str, Any]) -> ChatOptions:
    """Validate the keyword options of ``chat``; unknown ones pass through to the server."""
    opts = dict(options)
    model = opts.pop("model", None)
    if model is not None and not isinstance(model, (str, Mapping)):
        raise RequestError("model must be a string or a mapping of provider to model")
    temperature = opts.pop("temperature", None)
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise RequestError("temperature must be a number between 0 and 2")
        if not 0 <= temperature <= 2:
            raise RequestError(f"temperature {temperature} is out of range: use 0 to 2")
    max_tokens = opts.pop("max_tokens", None)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError("max_tokens must be a positive integer")
    stop = opts.pop("stop", None)
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop)
    ):
        raise RequestError("stop must be a string or a list of strings")
    workload = opts.pop("workload", None)
    if workload is not None and not isinstance(workload, str):
        raise RequestError("workload must be a string")
    return ChatOptions(
        model=model,
        temperature=float(temperature) if temperature is not None else None,
        max_tokens=max_tokens,
        stop=tuple(stop) if stop else None,
        workload=workload,
        extra=opts,
    )
