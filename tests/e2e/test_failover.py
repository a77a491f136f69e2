"""Failover through the conductor process: upstreams killed, restarted and broken mid-reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import ollama
import openai
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.helpers import (
    HI,
    LMSTUDIO_MODEL,
    LMSTUDIO_REPLY,
    OLLAMA_REPLY,
    ConductorProcess,
)
from tests.waiting import wait_until


@pytest.fixture
async def oai(demi: ConductorProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as client:
        yield client


async def ask(oai: openai.AsyncOpenAI) -> tuple[str, str, str]:
    """(provider header, fallback header, reply text) of one non-streaming request."""
    raw = await oai.chat.completions.with_raw_response.create(model="demi", messages=HI)
    reply = raw.parse().choices[0].message.content or ""
    return raw.headers["x-demi-provider"], raw.headers["x-demi-fallback"], reply


async def test_primary_killed_and_restarted_between_requests(
    demi: ConductorProcess, oai: openai.AsyncOpenAI, ollama_fake: FakeServer
) -> None:
    """Ollama dies: LM Studio answers (flagged); Ollama returns: DEMI switches back to it."""
    assert await ask(oai) == ("ollama", "false", OLLAMA_REPLY)
    ollama_fake.kill()
    assert await ask(oai) == ("lmstudio", "true", LMSTUDIO_REPLY)
    status = demi.get_json("/status")
    assert status["active_provider"] == "lmstudio"
    assert status["switches"][-1]["to"] == "lmstudio"
    assert status["providers"]["ollama"]["circuit"] == "open"

    ollama_fake.restart()

    async def back_on_ollama() -> bool:
        return bool(demi.get_json("/status")["active_provider"] == "ollama")

    await wait_until(back_on_ollama, "DEMI to switch back to Ollama")
    assert await ask(oai) == ("ollama", "false", OLLAMA_REPLY)
    status = demi.get_json("/status")
    assert status["switches"][-1]["reason"] == "Ollama recovered"
    assert status["counters"]["fallbacks"] == 1


async def test_primary_killed_while_a_request_waits_for_it(
    demi: ConductorProcess, oai: openai.AsyncOpenAI, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Ollama dies before its first token: the same request is answered by LM Studio."""
    ollama_fake.control(first_token_delay=60)
    task = asyncio.create_task(ask(oai))

    async def ollama_has_it() -> bool:
        return any(r["path"] == "/api/chat" for r in ollama_fake.requests())

    await wait_until(ollama_has_it, "the request to reach Ollama")
    ollama_fake.kill()
    assert await task == ("lmstudio", "true", LMSTUDIO_REPLY)
    assert any(r["path"] == "/v1/chat/completions" for r in lmstudio_fake.requests())


async def test_streaming_request_fails_over_before_the_first_token(
    demi: ConductorProcess, oai: openai.AsyncOpenAI, ollama_fake: FakeServer
) -> None:
    """A stream whose primary is down is served by LM Studio, with the real model named."""
    ollama_fake.kill()
    raw = await oai.chat.completions.with_raw_response.create(
        model="demi", messages=HI, stream=True)
    assert raw.headers["x-demi-provider"] == "lmstudio"
    chunks = [c async for c in raw.parse()]
    assert {c.model for c in chunks} == {LMSTUDIO_MODEL}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        LMSTUDIO_REPLY


async def test_all_providers_down_is_503_with_the_guides_message(
    demi: ConductorProcess, oai: openai.AsyncOpenAI, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Both upstreams dead: openai raises a 503 whose message is the guide's; so does ollama."""
    ollama_fake.kill()
    lmstudio_fake.kill()
    with pytest.raises(openai.InternalServerError) as info:
        await oai.chat.completions.create(model="demi", messages=HI)
    assert info.value.status_code == 503
    body = info.value.body
    assert isinstance(body, dict)
    assert body["message"].startswith("Both Ollama and LMStudio providers failed")
    client = ollama.AsyncClient(host=demi.url, timeout=10)
    try:
        with pytest.raises(ollama.ResponseError) as oinfo:
            await client.chat(model="demi", messages=HI)
    finally:
        await client.close()
    assert oinfo.value.status_code == 503
    assert oinfo.value.error.startswith("Both Ollama and LMStudio providers failed")
    ready = demi.get_json("/health/ready?refresh=1")
    assert ready["status"] == "unavailable"


async def test_stream_broken_midway_is_continued_or_raises(
    demi: ConductorProcess, oai: openai.AsyncOpenAI, ollama_fake: FakeServer
) -> None:
    """A cut stream is continued by LM Studio; pinned (nothing to continue on) clients raise."""
    ollama_fake.control(mode="cut", after_chunks=2, times=1)
    got: list[str] = []
    async for chunk in await oai.chat.completions.create(
            model="demi", messages=HI, stream=True):
        got += [c.delta.content or "" for c in chunk.choices]
    assert "".join(got) == LMSTUDIO_REPLY  # "Hello from" + LM Studio's continuation of it

    ollama_fake.control(mode="midstream_error", after_chunks=2, times=1)
    demi.post_json("/admin/provider", {"provider": "ollama"})  # stay on the broken primary
    client = ollama.AsyncClient(host=demi.url, timeout=10)
    parts: list[str] = []
    try:
        with pytest.raises(ollama.ResponseError) as oinfo:
            async for part in await client.chat(model="demi", messages=HI, stream=True):
                parts.append(part.message.content or "")
    finally:
        await client.close()
    assert "".join(parts) == "Hello from"
    assert "broke after" in oinfo.value.error


async def test_admin_force_provider_end_to_end(
    demi: ConductorProcess, oai: openai.AsyncOpenAI
) -> None:
    """Pinning LM Studio over HTTP routes the next request there, without a fallback flag."""
    demi.post_json("/admin/provider", {"provider": "lmstudio"})
    assert await ask(oai) == ("lmstudio", "false", LMSTUDIO_REPLY)
    assert demi.get_json("/status")["forced_provider"] == "lmstudio"
    demi.post_json("/admin/provider", {"provider": None})
    assert await ask(oai) == ("ollama", "false", OLLAMA_REPLY)

