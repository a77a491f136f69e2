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


def continue_from(tokens: tuple[str, ...], messages: object) -> tuple[str, ...]:
    """The tokens left to send when the conversation ends with a prefill of this reply.

    A trailing assistant message whose text starts this fake's reply is a request to
    continue it (what DEMI sends after another provider broke mid-stream), so the fake
    answers with the rest, deterministically: a test can check the seam, since the
    caller's text must be the whole reply, nothing lost or doubled. Any other
    conversation gets the whole reply.
    """
    if not isinstance(messages, list) or not messages:
        return tokens
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return tokens
    prefix = last.get("content")
    full = "".join(tokens)
    if not isinstance(prefix, str) or not prefix or not full.startswith(prefix):
        return tokens
    sent = ""
    for i, token in enumerate(tokens):
        if sent == prefix:
            return tokens[i:]
        sent += token
    return split_tokens(full[len(prefix):])
