"""The Anthropic face through the conductor process, driven by the real ``anthropic``
client: failover when the primary is killed, and the embedded model (a real engine) as the
last provider standing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import pytest

from src.testing.fakes.launcher import FakeServer, free_port
from tests.e2e.helpers import LMSTUDIO_REPLY, OLLAMA_REPLY, ConductorProcess
from tests.integration.engines import needs_embedded
from tests.waiting import wait_until

HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def ant(demi: ConductorProcess) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The real ``anthropic`` client on the test's conductor (no retries, so errors show)."""
    async with anthropic.AsyncAnthropic(base_url=demi.url, api_key="x", max_retries=0,
                                        timeout=30) as client:
        yield client


async def ask(ant: anthropic.AsyncAnthropic) -> tuple[str, str, str]:
    """(provider header, fallback header, reply text) of one messages.create."""
    raw = await ant.messages.with_raw_response.create(model="demi", max_tokens=50,
                                                      messages=HELLO)
    msg = await raw.parse()
    text = "".join(b.text for b in msg.content if b.type == "text")
    return raw.headers["x-demi-provider"], raw.headers["x-demi-fallback"], text


async def test_primary_killed_between_messages(
    demi: ConductorProcess, ant: anthropic.AsyncAnthropic, ollama_fake: FakeServer
) -> None:
    """Ollama SIGKILLed: the next message and the next stream come from LM Studio."""
    assert await ask(ant) == ("ollama", "false", OLLAMA_REPLY)
    ollama_fake.kill()
    assert await ask(ant) == ("lmstudio", "true", LMSTUDIO_REPLY)
    async with ant.messages.stream(model="demi", max_tokens=50, messages=HELLO) as stream:
        assert "".join([t async for t in stream.text_stream]) == LMSTUDIO_REPLY
        final = await stream.get_final_message()
    assert final.model == "qwen2.5-7b-instruct"
    assert demi.get_json("/status")["providers"]["ollama"]["circuit"] == "open"


async def test_primary_killed_while_a_stream_waits_for_it(
    demi: ConductorProcess, ant: anthropic.AsyncAnthropic, ollama_fake: FakeServer
) -> None:
    """Ollama dies before its first token: the same stream is served by LM Studio."""
    ollama_fake.control(first_token_delay=60)

    async def streamed() -> str:
        async with ant.messages.stream(model="demi", max_tokens=50, messages=HELLO) as stream:
            return "".join([t async for t in stream.text_stream])

    task = asyncio.create_task(streamed())

    async def ollama_has_it() -> bool:
        return any(r["path"] == "/api/chat" for r in ollama_fake.requests())

    await wait_until(ollama_has_it, "the request to reach Ollama")
    ollama_fake.kill()
    assert await task == LMSTUDIO_REPLY


async def test_every_provider_dead_is_overloaded_error(
    demi: ConductorProcess, ant: anthropic.AsyncAnthropic, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Both servers killed: 503 overloaded_error with the guide's message."""
    ollama_fake.kill()
    lmstudio_fake.kill()
    with pytest.raises(anthropic.InternalServerError) as caught:
        await ant.messages.create(model="demi", max_tokens=50, messages=HELLO)
    assert caught.value.status_code == 503
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert "Both Ollama and LMStudio providers failed" in caught.value.body["error"]["message"]


# -- the embedded model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_demi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConductorProcess]:
    """A conductor whose Ollama and LM Studio addresses have nothing listening."""
    workdir: Path = tmp_path_factory.mktemp("anthropic-embedded")
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    proc = ConductorProcess(workdir, dead[0], dead[1],
                            env={"DEMI_EMBEDDED_ENABLED": "true",
                                 "DEMI_HEALTH_CHECK_INTERVAL": "1"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.integration
@needs_embedded
async def test_the_embedded_model_answers_messages(embedded_demi: ConductorProcess) -> None:
    """Both servers down: the embedded model (a real llama.cpp engine) answers a message and
    a stream; a request with tools, which only the dead servers could take, is a 503
    overloaded_error (Claude Code retries those), not an answer without its tools."""
    async with anthropic.AsyncAnthropic(base_url=embedded_demi.url, api_key="x",
                                        max_retries=0, timeout=180) as client:
        ask: list[anthropic.types.MessageParam] = [
            {"role": "user", "content": "What is the capital of France?"}]
        raw = await client.messages.with_raw_response.create(model="demi", max_tokens=16,
                                                             messages=ask)
        assert raw.headers["x-demi-provider"] == "embedded"
        msg = await raw.parse()
        assert msg.content and msg.content[0].type == "text" and msg.content[0].text.strip()
        assert msg.stop_reason in ("end_turn", "max_tokens")
        assert msg.usage.output_tokens > 0
        async with client.messages.stream(model="demi", max_tokens=16, messages=ask) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text.strip() and final.stop_reason in ("end_turn", "max_tokens")
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(model="demi", max_tokens=16, messages=HELLO, tools=[{
                "name": "f", "input_schema": {"type": "object", "properties": {}}}])
    assert caught.value.status_code == 503
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
