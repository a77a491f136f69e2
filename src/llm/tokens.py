"""Fitting a conversation into a provider's context window, with self-calibrating estimates.

DEMI cannot run every provider's tokenizer, so it estimates tokens from characters and
corrects the estimate with what servers report (Ollama's ``prompt_eval_count``, OpenAI's
``usage.prompt_tokens``): one correction factor per model, a moving average, so trimming
gets more exact with use. One estimator serves every provider.

Trimming keeps system messages and the newest message, drops the oldest turns first, and
if what must be kept is still too large, shortens the longest kept message with a visible
marker rather than letting a server truncate it silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .types import Message

TRIM_MARKER = "\n[… {n} characters trimmed to fit the context window …]\n"


def _with_text(message: dict[str, Any], text: str) -> dict[str, Any]:
    """``message`` with its text replaced; images and other non-text parts are kept."""
    content = message.get("content")
    if isinstance(content, list):
        others = [p for p in content if not (isinstance(p, Mapping) and p.get("type") == "text")]
        return {**message, "content": [{"type": "text", "text": text}, *others]}
    return {**message, "content": text}


def _text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


@dataclass(frozen=True, slots=True)
class TrimReport:
    """What ``fit`` did, for the DEBUG log line and for tests."""

    kept: int
    dropped: int
    shortened: int
    estimated_tokens: int
    budget: int


class TokenEstimator:
    """Character-based token estimates, calibrated per model by server reports."""

    def __init__(
        self, chars_per_token: float = 4.0, per_message: int = 4, alpha: float = 0.3,
    ) -> None:
        self.chars_per_token = chars_per_token
        self.per_message = per_message
        self.alpha = alpha
        self._factor: dict[str, float] = {}

    def factor(self, model: str) -> float:
        """Reported tokens per estimated token for this model (1.0 until calibrated)."""
        return self._factor.get(model, 1.0)

    def _raw(self, messages: Sequence[Message]) -> float:
        chars = sum(len(_text(m)) for m in messages)
        return chars / self.chars_per_token + self.per_message * len(messages)

    def estimate(self, messages: Sequence[Message], model: str = "") -> int:
        return math.ceil(self._raw(messages) * self.factor(model))

    def estimate_text(self, text: str, model: str = "") -> int:
        """Tokens in a piece of text (a reply), without the per-message overhead."""
        return math.ceil(len(text) / self.chars_per_token * self.factor(model))

    def calibrate(self, model: str, messages: Sequence[Message], reported: int | None) -> None:
        """Fold one server-reported prompt size into this model's correction factor."""
        if not reported or reported <= 0:
            return
        raw = self._raw(messages)
        if raw <= 0:
            return
        sample = min(4.0, max(0.25, reported / raw))
        old = self._factor.get(model)
        self._factor[model] = sample if old is None else old + self.alpha * (sample - old)

    def fit(
        self, messages: Sequence[Message], budget: int, model: str = "",
    ) -> tuple[list[dict[str, Any]], TrimReport]:
        """Return messages that fit ``budget`` tokens, and what was done to get there."""
        msgs = [dict(m) for m in messages]
        total = self.estimate(msgs, model)
        if total <= budget or not msgs:
            return msgs, TrimReport(len(msgs), 0, 0, total, budget)
        last = len(msgs) - 1
        keep = [m.get("role") == "system" or i == last for i, m in enumerate(msgs)]
        dropped = 0
        # Drop the oldest droppable turns until the rest fits.
        for i in range(len(msgs)):
            if total <= budget:
                break
            if keep[i]:
                continue
            calls = bool(msgs[i].get("tool_calls"))
            total -= self.estimate([msgs[i]], model)
            msgs[i] = {}
            dropped += 1
            # A tool result without the call it answers is refused by servers: they go together.
            j = i + 1
            while calls and j < len(msgs) and not keep[j] and msgs[j].get("role") == "tool":
                total -= self.estimate([msgs[j]], model)
                msgs[j] = {}
                dropped += 1
                j += 1
        kept = [m for m in msgs if m]
        shortened = 0
        while self.estimate(kept, model) > budget and shortened < len(kept):
            longest = max(range(len(kept)), key=lambda j: len(_text(kept[j])))
            excess = self.estimate(kept, model) - budget
            text = _text(kept[longest])
            cut_chars = math.ceil(excess * self.chars_per_token / self.factor(model)) + 80
            if not text or cut_chars >= len(text):
                kept[longest] = _with_text(kept[longest], TRIM_MARKER.format(n=len(text)))
            else:
                head = (len(text) - cut_chars) // 2
                tail = len(text) - cut_chars - head
                kept[longest] = _with_text(
                    kept[longest],
                    text[:head] + TRIM_MARKER.format(n=cut_chars) + (text[-tail:] if tail else ""),
                )
            shortened += 1
        return kept, TrimReport(
            len(kept), dropped, shortened, self.estimate(kept, model), budget
        )
