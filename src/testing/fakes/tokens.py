"""A fake's reply as tokens: split from a text, or a fixed count of filler words."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\s*\S+|\s+$")
_FILLER = ("Lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def split_tokens(text: str) -> tuple[str, ...]:
    """Words with their leading whitespace; joining the tokens gives back ``text`` exactly."""
    return tuple(_TOKEN.findall(text))


def fixed_tokens(count: int) -> tuple[str, ...]:
    """A reply of exactly ``count`` tokens (benchmarks want a fixed reply length)."""
    return tuple(("" if i == 0 else " ") + _FILLER[i % len(_FILLER)] for i in range(count))
