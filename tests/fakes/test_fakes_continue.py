"""Both fakes continue their own reply from a prefill (a trailing assistant message)."""

from __future__ import annotations

import ollama
import openai
import pytest

from src.testing.fakes.launcher import FakeServer
from src.testing.fakes.tokens import continue_from, split_tokens

pytestmark = pytest.mark.timeout(60)
REPLY = "one two three four five six"
HI = [{"role": "user", "content": "hi"}]


def test_continue_from_returns_the_rest_or_everything() -> None:
    """A prefix of the reply yields the rest; anything else yields the whole reply."""
    tokens = split_tokens(REPLY)
    prefill = [*HI, {"role": "assistant", "content": "one two"}]
    assert "".join(continue_from(tokens, prefill)) == " three four five six"
    mid_token = [*HI, {"role": "assistant", "content": "one tw"}]
    assert "".join(continue_from(tokens, mid_token)) == "o three four five six"
    assert continue_from(tokens, [*HI, {"role": "assistant", "content": "other"}]) == tokens
    assert continue_from(tokens, HI) == tokens


async def test_fake_ollama_continues_a_prefill(fake_ollama: FakeServer) -> None:
    """Ollama's /api/chat answers only the rest of its reply after its own beginning."""
    fake_ollama.control(reply=REPLY)
    async with ollama.AsyncClient(host=fake_ollama.url, timeout=5) as c:
        got = await c.chat(model="llama3.2:1b",
                           messages=[*HI, {"role": "assistant", "content": "one two three"}])
    assert got.message.content == " four five six"
    assert got.eval_count == 3


async def test_fake_lmstudio_continues_a_prefill(fake_lmstudio: FakeServer) -> None:
    """LM Studio's streamed /v1/chat/completions sends only the rest after a prefill."""
    fake_lmstudio.control(reply=REPLY)
    async with openai.AsyncOpenAI(base_url=f"{fake_lmstudio.url}/v1", api_key="x",
                                  max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="qwen2.5-7b-instruct", stream=True,
            messages=[*HI, {"role": "assistant", "content": "one"}],  # type: ignore[list-item]
        )
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream
                        if ch.choices])
    assert text == " two three four five six"


async def test_load_time_simulates_a_cold_load_once(fake_lmstudio: FakeServer) -> None:
    """With load_time, a request for an unloaded model loads it; a negative value is refused."""
    fake_lmstudio.control(loaded=[], jit=True, load_time=0.05)
    async with openai.AsyncOpenAI(base_url=f"{fake_lmstudio.url}/v1", api_key="x",
                                  max_retries=0) as c:
        await c.chat.completions.create(model="qwen2.5-7b-instruct", messages=HI)  # type: ignore[arg-type]
    snap = fake_lmstudio.config()
    assert snap["loaded"] == ["qwen2.5-7b-instruct"] and snap["load_time"] == 0.05
    with pytest.raises(Exception, match="load_time"):
        fake_lmstudio.control(load_time=-1)
