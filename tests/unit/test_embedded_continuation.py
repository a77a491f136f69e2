"""The embedded model continues a reply: the prompt ends with it, and its space is kept."""

from __future__ import annotations

from src.llm.providers import embedded
from src.llm.providers.gguf import render_prompt


def test_a_trailing_assistant_message_is_the_start_of_the_reply() -> None:
    """No new ASSISTANT: turn after the prefill; earlier assistant turns render as before."""
    parts = render_prompt([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Count to five"},
        {"role": "assistant", "content": "One, two,"},
    ])
    assert parts.render() == (
        "Be brief.\n\nUSER: Hi\nASSISTANT: Hello\nUSER: Count to five\nASSISTANT: One, two,"
    )
    assert parts.render(2) == "Be brief.\n\nUSER: Count to five\nASSISTANT: One, two,"


def test_a_continuation_keeps_its_leading_space() -> None:
    """A fresh reply drops leading space; a continuation keeps it (it joins shown text)."""
    fresh, cont = embedded._EdgeSpace(), embedded._EdgeSpace(started=True)
    assert fresh.feed(" three") == "three"
    assert cont.feed(" three") == " three"
