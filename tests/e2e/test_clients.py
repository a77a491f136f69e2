"""The conductor process answering the real ``openai`` and ``ollama`` client libraries."""

from __future__ import annotations

import ollama
import openai
import pytest

from tests.e2e.helpers import (
    HI,
    OLLAMA_MODEL,
    OLLAMA_REPLY,
    ConductorProcess,
)


async def test_openai_client_non_streaming(oai: openai.AsyncOpenAI) -> None:
    """openai's client parses DEMI's completion, and the headers name the provider."""
    raw = await oai.chat.completions.with_raw_response.create(model="demi", messages=HI)
    assert raw.headers["x-demi-provider"] == "ollama"
    assert raw.headers["x-demi-fallback"] == "false"
    completion = raw.parse()
    assert completion.model == OLLAMA_MODEL
    assert completion.choices[0].message.content == OLLAMA_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_openai_client_streaming_with_usage(oai: openai.AsyncOpenAI) -> None:
    """openai's streaming iterator gets the whole reply, the finish reason and usage."""
    stream = await oai.chat.completions.create(
        model="demi", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    text, reasons, usage = [], [], None
    async for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(text) == OLLAMA_REPLY
    assert reasons == ["stop"]
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + 3


async def test_openai_client_lists_models(oai: openai.AsyncOpenAI) -> None:
    """openai's models.list() sees the alias and the configured model."""
    ids = [m.id async for m in oai.models.list()]
    assert ids == ["demi", OLLAMA_MODEL]


async def test_openai_client_unknown_model_is_not_found(oai: openai.AsyncOpenAI) -> None:
    """An unknown model raises openai.NotFoundError with code model_not_found."""
    with pytest.raises(openai.NotFoundError) as info:
        await oai.chat.completions.create(model="gpt-4o", messages=HI)
    assert info.value.code == "model_not_found"


async def test_openai_client_bad_request(oai: openai.AsyncOpenAI) -> None:
    """A request DEMI cannot honour (n=2) raises openai.BadRequestError with the reason."""
    with pytest.raises(openai.BadRequestError) as info:
        await oai.chat.completions.create(model="demi", messages=HI, n=2)
    assert "n must be 1" in info.value.message


async def test_ollama_client_chat(oll: ollama.AsyncClient) -> None:
    """ollama's client gets a whole reply and a streamed one with final counts."""
    reply = await oll.chat(model="demi", messages=HI)
    assert reply.message.content == OLLAMA_REPLY
    assert reply.done and reply.done_reason == "stop"
    assert reply.eval_count == 3
    parts = [part async for part in await oll.chat(model="demi", messages=HI, stream=True)]
    assert "".join(p.message.content or "" for p in parts) == OLLAMA_REPLY
    assert parts[-1].done and parts[-1].total_duration is not None


async def test_ollama_client_generate_and_list(oll: ollama.AsyncClient) -> None:
    """ollama's generate() and list() work against DEMI."""
    reply = await oll.generate(model="demi", prompt="hi", system="Be brief.")
    assert reply.response == OLLAMA_REPLY
    pieces = [p.response async for p in await oll.generate(model="demi", prompt="x", stream=True)]
    assert "".join(pieces) == OLLAMA_REPLY
    listing = await oll.list()
    assert [m.model for m in listing.models] == ["demi", OLLAMA_MODEL]


async def test_ollama_client_unknown_model(oll: ollama.AsyncClient) -> None:
    """An unknown model raises ollama.ResponseError 404 with Ollama's wording."""
    with pytest.raises(ollama.ResponseError) as info:
        await oll.chat(model="mistral", messages=HI)
    assert info.value.status_code == 404
    assert info.value.error == "model 'mistral' not found"


async def test_start_up_prints_the_url_and_a_curl_example(demi: ConductorProcess) -> None:
    """serve prints where it listens and one request to try."""
    out = demi.stdout()
    assert demi.url in out
    assert f"curl {demi.url}/v1/chat/completions" in out
    assert "Using Ollama provider" in demi.stderr()
