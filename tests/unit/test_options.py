"""Validation of chat messages and options: the caller's mistakes become RequestError."""

from __future__ import annotations

import pytest

from src.llm.errors import RequestError
from src.llm.options import parse_options, validate_messages


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "must not be empty"),
        ("hello", "must be a list"),
        ([42], "messages[0] must be an object"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role is 'wizard'"),
        ([{"role": "user", "content": 5}], "messages[0].content must be a string"),
    ],
)
def test_bad_messages_are_rejected_clearly(messages: object, fragment: str) -> None:
    """Each malformed message list names what is wrong."""
    with pytest.raises(RequestError) as info:
        validate_messages(messages)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_messages_are_copied() -> None:
    """The validated list is a copy, so trimming cannot touch the caller's data."""
    original = [{"role": "user", "content": "hi"}]
    out = validate_messages(original)
    out[0]["content"] = "changed"
    assert original[0]["content"] == "hi"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"temperature": 3}, "out of range"),
        ({"temperature": "hot"}, "must be a number"),
        ({"max_tokens": 0}, "positive integer"),
        ({"stop": [1]}, "list of strings"),
        ({"model": 7}, "model must be"),
    ],
)
def test_bad_options_are_rejected(options: dict[str, object], fragment: str) -> None:
    """Out-of-range or mistyped options are the caller's error."""
    with pytest.raises(RequestError) as info:
        parse_options(options)
    assert fragment in str(info.value)


def test_options_parse_and_pass_through_extras() -> None:
    """Known options are typed; unknown ones (top_p, seed) pass through to the server."""
    opts = parse_options({"temperature": 0, "max_tokens": 5, "stop": "END", "top_p": 0.9,
                          "model": {"ollama": "qwen3"}})
    assert opts.temperature == 0.0
    assert opts.stop == ("END",)
    assert opts.extra == {"top_p": 0.9}
    assert opts.model_for("ollama") == "qwen3"
    assert opts.model_for("lmstudio") is None
