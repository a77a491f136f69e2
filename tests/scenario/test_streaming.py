"""Streams: failover before the first token is invisible; a break after text is not papered over."""

from __future__ import annotations

import asyncio

import pytest

from src.llm import AllProvidersFailed, StreamInterrupted
from src.llm.clock import ManualClock
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_CHAT,
    LMSTUDIO_REPLY,
    OLLAMA_CHAT,
    LogCapture,
    MakeLLM,
    count,
    wait_until,
)
from tests.fakes.fixtures import FakeServerFactory

pytestmark = pytest.mark.timeout(60)

PARTIAL = "Hello from"  # the fake Ollama's first two chunks: "Hello", " from"


async def test_primary_killed_during_first_token_wait_streams_lmstudio_reply(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_lmstudio: FakeServer,
    log: LogCapture,
) -> None:
    """Ollama killed during the first-token wait → the caller streams LM Studio's whole reply."""
    ollama = fake_server_factory("ollama")
    ollama.control(first_token_delay=5)
    received: list[str] = []

    # The first-token bound is long: the failover must come from the kill, not a timeout.
    async with make_llm(ollama, ollama={"timeout": 30}) as llm:

        async def consume() -> None:
            async for piece in llm.stream_chat(HI):
                received.append(piece)

        task = asyncio.create_task(consume())
        await wait_until(lambda: count(ollama, OLLAMA_CHAT) == 1, "the chat to reach Ollama")
        assert received == []
        ollama.kill()
        async with asyncio.timeout(20):
            await task
    assert "".join(received) == LMSTUDIO_REPLY
    assert not [piece for piece in received if "ollama" in piece]
    warnings = log.containing("[WARNING] Ollama inference failed")
    assert len(warnings) == 1 and "first token" not in warnings[0]


async def test_open_stream_reports_failover_before_first_token(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """A stream that fails over before any text says so: provider, fallback flag, attempts."""
    fake_ollama.control(mode="cut", after_chunks=0)
    async with make_llm() as llm:
        reply = await llm.open_stream(HI)
        chunks = [chunk async for chunk in reply]
    assert (reply.provider, reply.fallback_used) == ("lmstudio", True)
    assert reply.attempts[0][0] == "ollama"
    assert "".join(c.text for c in chunks) == LMSTUDIO_REPLY
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])


@pytest.mark.parametrize("mode", ["cut", "midstream_error"])
async def test_stream_broken_after_text_raises_stream_interrupted(
    mode: str, make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """mid_stream: error: Ollama breaks after two chunks → StreamInterrupted, no LM Studio text."""
    fake_ollama.control(mode=mode, after_chunks=2)
    received: list[str] = []
    async with make_llm(mid_stream="error") as llm:
        with pytest.raises(StreamInterrupted) as info:
            async for piece in llm.stream_chat(HI):
                received.append(piece)
    assert "".join(received) == PARTIAL
    assert not isinstance(info.value, AllProvidersFailed)
    assert info.value.delivered_chars == len(PARTIAL)
    assert "Ollama" in str(info.value)
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 0


@pytest.mark.parametrize("mode", ["cut", "midstream_error"])
async def test_chat_broken_after_text_raises_stream_interrupted(
    mode: str, make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """chat() on a reply that broke after text raises StreamInterrupted, not a spliced answer."""
    fake_ollama.control(mode=mode, after_chunks=2)
    async with make_llm() as llm:
        with pytest.raises(StreamInterrupted):
            await llm.chat(HI)
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 0


async def test_next_message_after_interrupted_stream_goes_to_fallback_whole(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """A stream broken mid-reply counts against Ollama: the next message is LM Studio's, whole."""
    fake_ollama.control(mode="cut", after_chunks=2, times=1)
    # Manual clock: no background probe re-admits Ollama between the two messages.
    async with make_llm(clock=ManualClock()) as llm:
        with pytest.raises(StreamInterrupted):
            await llm.chat(HI)
        assert llm.active_provider == "lmstudio"
        result = await llm.chat_detailed(HI)
    assert (result.provider, result.text, result.finish_reason) == (
        "lmstudio", LMSTUDIO_REPLY, "stop",
    )
    assert count(fake_ollama, OLLAMA_CHAT) == 1
    assert log.containing("[WARNING] Ollama inference failed: connection closed")


async def test_stream_stalled_mid_reply_is_interrupted_at_idle_bound(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """mid_stream: error: Ollama silent after two chunks → StreamInterrupted at the idle bound."""
    fake_ollama.control(mode="hang", after_chunks=2)
    received: list[str] = []
    async with make_llm(read_idle_timeout=0.5, mid_stream="error") as llm:
        async with asyncio.timeout(30):
            with pytest.raises(StreamInterrupted) as info:
                async for piece in llm.stream_chat(HI):
                    received.append(piece)
    assert "".join(received) == PARTIAL
    assert "no data for 0.5s" in str(info.value)
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 0


async def test_slow_chunks_within_idle_bound_are_not_a_failure(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Chunks that keep coming, however slowly, within read_idle_timeout make a whole reply."""
    fake_ollama.control(chunk_delay=0.1)
    async with make_llm(read_idle_timeout=3.0) as llm:
        pieces = [piece async for piece in llm.stream_chat(HI)]
    assert pieces == ["Hello", " from", " fake-ollama."]
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 0


async def test_stream_stalled_mid_reply_is_continued_by_lmstudio(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """mid_stream: continue (default): a stall at the idle bound is finished by LM Studio."""
    fake_ollama.control(mode="hang", after_chunks=2, reply=LMSTUDIO_REPLY)
    async with make_llm(read_idle_timeout=0.5) as llm:
        async with asyncio.timeout(30):
            received = [piece async for piece in llm.stream_chat(HI)]
        asked = [r for r in fake_lmstudio.requests() if r["path"].endswith("/completions")]
    assert "".join(received) == LMSTUDIO_REPLY  # its own reply continued: nothing doubled
    assert asked[-1]["json"]["messages"][-1] == {"role": "assistant",
                                                 "content": "".join(received[:2])}
