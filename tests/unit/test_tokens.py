"""Token estimates, trimming to the context window, and calibration from server reports."""

from __future__ import annotations

from src.llm.tokens import TokenEstimator


def conv(n: int, size: int = 400) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "You are DEMI."}]
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append({"role": role, "content": f"turn {i} " + "x" * size})
    msgs.append({"role": "user", "content": "newest question"})
    return msgs


def test_fits_untouched_when_small() -> None:
    """A conversation within budget is returned unchanged."""
    est = TokenEstimator()
    msgs = conv(2, 10)
    out, report = est.fit(msgs, 1000)
    assert out == msgs
    assert report.dropped == 0 and report.shortened == 0


def test_drops_oldest_turns_keeps_system_and_newest() -> None:
    """Oldest non-system turns go first; the system prompt and newest message stay."""
    est = TokenEstimator()
    msgs = conv(20)
    out, report = est.fit(msgs, 400)
    assert out[0]["content"] == "You are DEMI."
    assert out[-1]["content"] == "newest question"
    assert report.dropped > 0
    assert est.estimate(out) <= 400
    kept_turns = [m["content"].split()[1] for m in out[1:-1]]
    assert kept_turns == sorted(kept_turns, key=int)
    assert "19" in kept_turns  # the newest turns survive, the oldest do not
    assert "0" not in kept_turns


def test_single_huge_message_is_shortened_visibly() -> None:
    """A message too large on its own is cut in the middle with a marker."""
    est = TokenEstimator()
    huge = "start " + "y" * 20000 + " end"
    out, report = est.fit([{"role": "user", "content": huge}], 500)
    assert report.shortened == 1
    text = out[0]["content"]
    assert "trimmed to fit the context window" in text
    assert text.startswith("start ") and text.endswith(" end")
    assert est.estimate(out) <= 500


def test_does_not_modify_callers_messages() -> None:
    """Trimming works on copies."""
    est = TokenEstimator()
    msgs = conv(10)
    before = [dict(m) for m in msgs]
    est.fit(msgs, 100)
    assert msgs == before


def test_calibration_moves_toward_reported_counts() -> None:
    """Reported prompt sizes pull the per-model factor toward reported/estimated."""
    est = TokenEstimator(alpha=0.5)
    msgs = [{"role": "user", "content": "z" * 400}]
    raw = est.estimate(msgs, "m")
    est.calibrate("m", msgs, raw * 2)
    assert est.factor("m") == 2.0
    est.calibrate("m", msgs, raw * 2)
    assert est.factor("m") == 2.0
    est.calibrate("m", msgs, raw)
    assert 1.0 < est.factor("m") < 2.0
    assert est.factor("other") == 1.0


def test_calibration_ignores_missing_reports() -> None:
    """No report (None or 0) leaves the factor alone."""
    est = TokenEstimator()
    est.calibrate("m", [{"role": "user", "content": "hi"}], None)
    est.calibrate("m", [{"role": "user", "content": "hi"}], 0)
    assert est.factor("m") == 1.0


def test_content_parts_are_counted() -> None:
    """OpenAI-style content parts count their text."""
    est = TokenEstimator()
    parts = [{"role": "user", "content": [{"type": "text", "text": "a" * 400}]}]
    assert est.estimate(parts) == est.estimate([{"role": "user", "content": "a" * 400}])


def test_shortening_content_parts_keeps_the_images() -> None:
    """A huge message with an image loses text, never the image part."""
    est = TokenEstimator()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "x" * 40_000}, image]}]
    fitted, report = est.fit(msgs, 500)
    assert report.shortened == 1
    content = fitted[0]["content"]
    assert content[-1] == image
    assert content[0]["type"] == "text" and len(content[0]["text"]) < 40_000


def test_a_dropped_tool_call_takes_its_results_along() -> None:
    """Dropping an assistant tool call also drops the tool results answering it."""
    est = TokenEstimator()
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "x" * 4000, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "b"},
        {"role": "user", "content": "now?"},
    ]
    fitted, report = est.fit(msgs, 50)
    assert [m["role"] for m in fitted] == ["user"]
    assert fitted[0]["content"] == "now?"
    assert report.dropped == 3
