"""Hung upstreams: a silent primary costs one bounded wait, a hung probe costs messages nothing.

Assertions count requests in the fakes' logs; time only appears as hang guards.
"""

from __future__ import annotations

import asyncio

import pytest

from src.llm import AllProvidersFailed
from src.llm.clock import ManualClock
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_REPLY,
    OLLAMA_CHAT,
    OLLAMA_TAGS,
    LogCapture,
    MakeLLM,
    SteppingClock,
    count,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


async def test_hung_primary_abandoned_at_first_token_bound_then_breaker_skips_it(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Ollama never answers → abandoned at its first-token bound; later messages skip it."""
    fake_ollama.control(mode="hang")  # chat routes only: Ollama's health check still passes
    # A still clock: no probe can re-admit Ollama (its /api/tags is fine) during the test.
    async with make_llm(clock=ManualClock(), ollama={"timeout": 1.0}) as llm:
        async with asyncio.timeout(30):
            first = await llm.chat_detailed(HI)
            later = [await llm.chat_detailed(HI) for _ in range(3)]
    assert (first.provider, first.text) == ("lmstudio", LMSTUDIO_REPLY)
    assert first.attempts == (("ollama", "no first token within 1s"),)
    assert [r.provider for r in later] == ["lmstudio"] * 3
    assert all(r.attempts == () for r in later)  # nobody waited on Ollama again
    assert count(fake_ollama, OLLAMA_CHAT) == 1
    assert log.lines.count("[WARNING] Ollama inference failed: no first token within 1s") == 1


async def test_hung_health_probe_does_not_hold_messages_in_fallback(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """In fallback, a probe of Ollama that hangs is not waited out: messages keep flowing."""
    fake_ollama.control(models=[])  # unhealthy at start-up: DEMI starts in fallback
    clock = SteppingClock()
    # The probe may take a full minute; the messages below are guarded far below that.
    async with make_llm(clock=clock, health_check_timeout=60) as llm:
        assert llm.active_provider == "lmstudio"
        fake_ollama.control(models=["llama3.2:1b"], mode="hang", routes="health")
        fake_ollama.clear_requests()
        await clock.step(1.0)  # Ollama's probe is due: one probe starts, and hangs
        await wait_until(lambda: count(fake_ollama, OLLAMA_TAGS) == 1, "the probe to hang")
        async with asyncio.timeout(30):  # 5 messages each held for the probe would need 300 s
            results = [await llm.chat_detailed(HI) for _ in range(5)]
        tags = count(fake_ollama, OLLAMA_TAGS)
        assert llm.provider_status("ollama")["circuit"] == "open"
    assert [r.provider for r in results] == ["lmstudio"] * 5
    assert tags == 1  # the single probe still in flight; no second one was started
    assert count(fake_ollama, OLLAMA_CHAT) == 0


async def test_hung_health_probe_at_start_is_bounded_by_health_timeout(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """A start-up check of a hung Ollama gives up at health_check_timeout and starts in fallback."""
    fake_ollama.control(mode="hang", routes="health")
    async with asyncio.timeout(30):
        async with make_llm(health_check_timeout=1.0, probe_interval=60) as llm:
            assert llm.active_provider == "lmstudio"
            status = llm.provider_status("ollama")
            result = await llm.chat_detailed(HI)
    assert status["healthy"] is False and "timed out" in status["last_error"]
    assert result.provider == "lmstudio"


async def test_slow_first_token_within_bound_is_not_a_failure(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """A cold model load (late first token, inside the bound) is waited for, not failed over."""
    fake_ollama.control(first_token_delay=0.5)
    async with make_llm(ollama={"timeout": 10.0}) as llm:
        result = await llm.chat_detailed(HI)
    assert (result.provider, result.attempts) == ("ollama", ())
    assert not log.containing("inference failed")


async def test_both_hung_fail_with_both_first_token_reasons(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Both providers silent → 'Both ... failed' naming each provider's first-token bound."""
    fake_ollama.control(mode="hang")
    fake_lmstudio.control(mode="hang")
    async with make_llm(ollama={"timeout": 1.0}, lmstudio={"timeout": 1.0}) as llm:
        async with asyncio.timeout(30):
            with pytest.raises(AllProvidersFailed) as info:
                await llm.chat(HI)
    message = str(info.value)
    assert message.startswith("Both Ollama and LMStudio providers failed")
    assert "Ollama: no first token within 1s" in message
    assert "LMStudio: no first token within 1s" in message
