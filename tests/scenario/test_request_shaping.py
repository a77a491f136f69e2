"""What DEMI sends upstream: Ollama options, per-call overrides, trimming and calibration.

Each test reads the request body the fake server actually received.
"""

from __future__ import annotations

from typing import Any

import pytest

from src.testing.fakes.engine import prompt_tokens_for_messages
from src.testing.fakes.launcher import FakeServer
from tests.conftest import HI, LMSTUDIO_CHAT, OLLAMA_CHAT, MakeLLM, dead_url, paths

pytestmark = pytest.mark.timeout(60)

TRIM_NOTE = "characters trimmed to fit the context window"
SYSTEM = {"role": "system", "content": "You are DEMI, a helpful assistant."}


def sent(server: FakeServer, path: str = OLLAMA_CHAT) -> list[dict[str, Any]]:
    """The JSON bodies of the chat requests the fake received, oldest first."""
    return [r["json"] for r in paths(server, path)]


async def test_ollama_request_carries_num_ctx_and_configured_temperature(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """The /api/chat body has options.num_ctx == context_window and the configured temperature."""
    async with make_llm(ollama={"context_window": 4096, "temperature": 0.3}) as llm:
        await llm.chat(HI)
    (body,) = sent(fake_ollama)
    assert body["model"] == "llama3.2:1b" and body["stream"] is True
    assert body["options"]["num_ctx"] == 4096
    assert body["options"]["temperature"] == 0.3
    assert "num_predict" not in body["options"]
    assert body["messages"] == HI


async def test_per_call_temperature_and_max_tokens_override(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """chat(messages, temperature=0.1, max_tokens=5) → options temperature 0.1, num_predict 5."""
    fake_ollama.control(reply_tokens=20)
    async with make_llm(ollama={"context_window": 4096, "temperature": 0.3}) as llm:
        await llm.chat(HI, temperature=0.1, max_tokens=5)
        result = await llm.chat_detailed(HI, max_tokens=5)
    first, second = sent(fake_ollama)
    assert first["options"] == {"num_ctx": 4096, "temperature": 0.1, "num_predict": 5}
    assert second["options"]["temperature"] == 0.3  # overrides are per call
    assert (result.completion_tokens, result.finish_reason) == (5, "length")


async def test_lmstudio_request_carries_temperature_and_max_tokens(
    make_llm: MakeLLM, fake_lmstudio: FakeServer
) -> None:
    """The LM Studio body carries the configured temperature, per-call max_tokens, stream usage."""
    async with make_llm(dead_url(), lmstudio={"temperature": 0.2}) as llm:
        await llm.chat(HI)
        await llm.chat(HI, temperature=0.9, max_tokens=7)
    first, second = sent(fake_lmstudio, LMSTUDIO_CHAT)
    assert first["temperature"] == 0.2 and "max_tokens" not in first
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert (second["temperature"], second["max_tokens"]) == (0.9, 7)


async def test_long_conversation_is_trimmed_oldest_first(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """A conversation far over a 512-token window reaches Ollama as system + newest turns only."""
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i:02d} " + "x" * 200}
        for i in range(60)
    ]
    newest = {"role": "user", "content": "And what is the newest question?"}
    conversation = [SYSTEM, *turns, newest]
    original = [dict(m) for m in conversation]
    async with make_llm(ollama={"context_window": 512}) as llm:
        await llm.chat(conversation)
    (body,) = sent(fake_ollama)
    messages = body["messages"]
    assert messages[0] == SYSTEM and messages[-1] == newest
    kept = messages[1:-1]
    assert 0 < len(kept) < len(turns)
    assert kept == turns[len(turns) - len(kept):]  # the newest turns survive, in order
    assert not any(TRIM_NOTE in m["content"] for m in messages)
    assert prompt_tokens_for_messages(messages) <= body["options"]["num_ctx"]
    assert conversation == original  # the caller's list is left alone


async def test_single_huge_message_is_shortened_with_marker(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """One message bigger than the window is shortened in the middle with a visible marker."""
    huge = "BEGINNING " + "y" * 20_000 + " THE END"
    async with make_llm(ollama={"context_window": 512}) as llm:
        await llm.chat([SYSTEM, {"role": "user", "content": huge}])
    (body,) = sent(fake_ollama)
    system, user = body["messages"]
    assert system == SYSTEM
    content = user["content"]
    assert TRIM_NOTE in content
    assert content.startswith("BEGINNING ") and content.endswith(" THE END")
    assert len(content) < len(huge)
    assert prompt_tokens_for_messages(body["messages"]) <= 512


async def test_reported_prompt_size_calibrates_the_estimate(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """A reply reporting prompt_eval_count moves tokens.factor() toward reported/estimated."""
    # Many tiny messages: the fake counts 4 tokens each, DEMI's estimate says 4.75.
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "abc"} for i in range(9)
    ]
    async with make_llm() as llm:
        assert llm.ollama is not None
        key = f"{llm.ollama.name}:{llm.ollama.model}"
        before = llm.tokens.factor(key)
        estimated = llm.tokens.estimate(messages)  # uncalibrated
        result = await llm.chat_detailed(messages)
        after = llm.tokens.factor(key)
        calibrated = llm.tokens.estimate(messages, key)
    reported = result.prompt_tokens
    assert reported is not None and reported != estimated
    target = reported / estimated
    assert before == 1.0
    assert abs(after - target) < abs(before - target)
    assert after == pytest.approx(target, rel=0.05)
    assert abs(calibrated - reported) < abs(estimated - reported)


async def test_each_provider_gets_the_conversation_fitted_to_its_own_window(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """On failover the fallback gets the conversation fitted to its window, not the primary's."""
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i:02d} " + "z" * 200}
        for i in range(21)
    ]
    fake_ollama.control(mode="status", status=500)
    async with make_llm(ollama={"context_window": 8192},
                        lmstudio={"context_window": 512}) as llm:
        result = await llm.chat_detailed([SYSTEM, *turns])
    assert result.provider == "lmstudio"
    (to_ollama,) = sent(fake_ollama)
    (to_lmstudio,) = sent(fake_lmstudio, LMSTUDIO_CHAT)
    assert to_ollama["messages"] == [SYSTEM, *turns]  # fits 8192: untouched
    trimmed = to_lmstudio["messages"]
    assert trimmed[0] == SYSTEM and trimmed[-1] == turns[-1]
    assert len(trimmed) < len(turns) + 1
    assert prompt_tokens_for_messages(trimmed) <= 512


async def test_stop_and_extra_sampling_options_pass_through(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """stop= and unknown sampling options (top_p, seed) reach both providers' request bodies."""
    async with make_llm() as llm:
        await llm.chat(HI, stop="USER:", top_p=0.5, seed=7)
        llm.force_provider("lmstudio")
        await llm.chat(HI, stop=["USER:"], top_p=0.5, seed=7)
    (ollama_body,) = sent(fake_ollama)
    (lmstudio_body,) = sent(fake_lmstudio, LMSTUDIO_CHAT)
    assert ollama_body["options"]["stop"] == ["USER:"]
    assert (ollama_body["options"]["top_p"], ollama_body["options"]["seed"]) == (0.5, 7)
    assert lmstudio_body["stop"] == ["USER:"]
    assert (lmstudio_body["top_p"], lmstudio_body["seed"]) == (0.5, 7)
