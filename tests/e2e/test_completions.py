"""``/v1/completions`` through DEMI with the real ``openai`` client, and what it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.helpers import OLLAMA_REPLY, ConductorProcess


@pytest.fixture
async def oai(demi: ConductorProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as client:
        yield client


async def test_completion_whole_and_streamed(
    oai: openai.AsyncOpenAI, ollama_fake: FakeServer
) -> None:
    """The prompt runs as a chat on Ollama; text, finish reason and usage come back."""
    got = await oai.completions.create(model="demi", prompt="Say hi", max_tokens=50)
    assert got.object == "text_completion"
    assert got.choices[0].text == OLLAMA_REPLY
    assert got.choices[0].finish_reason == "stop"
    assert got.usage is not None and got.usage.completion_tokens == 3
    chat = [r["json"] for r in ollama_fake.requests() if r["path"] == "/api/chat"][-1]
    assert chat["messages"] == [{"role": "user", "content": "Say hi"}]
    stream = await oai.completions.create(model="demi", prompt="Say hi", stream=True,
                                          stream_options={"include_usage": True})
    texts, reasons, usage = [], [], None
    async for event in stream:
        for choice in event.choices:
            texts.append(choice.text)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
        usage = event.usage or usage
    assert "".join(texts) == OLLAMA_REPLY
    assert reasons == ["stop"]
    assert usage is not None and usage.completion_tokens == 3


@pytest.mark.parametrize("field", [{"echo": True}, {"suffix": "x"}, {"best_of": 2}])
async def test_completion_fields_a_chat_cannot_do_are_400(
    oai: openai.AsyncOpenAI, field: dict[str, object]
) -> None:
    """echo, suffix and best_of are refused with a 400 naming the field."""
    with pytest.raises(openai.BadRequestError) as info:
        await oai.completions.create(model="demi", prompt="x", **field)  # type: ignore[call-overload]
    assert next(iter(field)) in str(info.value)
