"""The guide's set-ups A, B and C, both providers down, and LM Studio as the primary.

Every test runs DEMI's real clients against real fake-server processes on loopback.
"""

from __future__ import annotations

import pytest

from src.core.config import load_config
from src.llm import AllProvidersFailed, DemiError, UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_CHAT,
    LMSTUDIO_REPLY,
    OLLAMA_CHAT,
    OLLAMA_REPLY,
    LogCapture,
    MakeLLM,
    count,
    dead_url,
)
from tests.fakes.fixtures import FakeServerFactory

pytestmark = pytest.mark.timeout(60)


async def test_option_a_only_ollama_with_fallback_disabled_works(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """Option A: fallback disabled, only Ollama running → Ollama answers; chain is Ollama only."""
    async with make_llm(lmstudio_at=dead_url(), enable_fallback=False) as llm:
        assert llm.chain == ["ollama"]
        result = await llm.chat_detailed(HI)
    assert (result.provider, result.text, result.fallback_used) == ("ollama", OLLAMA_REPLY, False)


async def test_option_a_ollama_down_raises_fallback_disabled_message(
    fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Option A, Ollama down, DEMI_ENABLE_LLM_FALLBACK=false → the guide's error; LM Studio idle."""
    config = load_config(
        environ={
            "DEMI_ENABLE_LLM_FALLBACK": "false",
            "OLLAMA_BASE_URL": dead_url(),
            "LMSTUDIO_BASE_URL": fake_lmstudio.url,
            "DEMI_EMBEDDED_ENABLED": "false",
        },
        dotenv_path=None,
    )
    async with UnifiedLLMInference(config, log.logger) as llm:
        with pytest.raises(AllProvidersFailed) as info:
            await llm.chat(HI)
    message = str(info.value)
    assert message.startswith("Ollama provider failed and fallback is disabled")
    assert "DEMI_ENABLE_LLM_FALLBACK=true" in message
    assert "Connection refused" in message
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 0


async def test_option_b_both_up_ollama_serves(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Option B: both up → Ollama serves, provider == "ollama", fallback_used is False."""
    async with make_llm() as llm:
        assert llm.active_provider == "ollama"
        result = await llm.chat_detailed(HI)
    assert result.provider == "ollama" and result.text == OLLAMA_REPLY
    assert result.fallback_used is False and result.attempts == ()
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 0
    assert "[INFO] Using Ollama provider" in log.lines


async def test_option_c_only_lmstudio_first_message_goes_straight_to_lmstudio(
    make_llm: MakeLLM, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Option C: Ollama refused at start → first message served by LM Studio, Ollama not tried."""
    async with make_llm(dead_url()) as llm:
        assert llm.active_provider == "lmstudio"
        result = await llm.chat_detailed(HI)
    assert result.provider == "lmstudio" and result.text == LMSTUDIO_REPLY
    assert result.attempts == ()  # Ollama's chat was never attempted
    assert result.fallback_used is True
    assert "[INFO] Ollama unavailable, switched to LMStudio provider" in log.lines
    assert not log.containing("Ollama inference failed")


async def test_option_c_killed_ollama_gets_no_chat_request_after_start(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_lmstudio: FakeServer,
    log: LogCapture,
) -> None:
    """Option C: the killed Ollama (listening again, same port) receives no chat after start."""
    ollama = fake_server_factory("ollama")
    ollama.kill()  # connection refused at start-up
    # A long probe spacing keeps health probes from re-admitting Ollama during the test.
    async with make_llm(ollama, probe_interval=60) as llm:
        assert llm.active_provider == "lmstudio"
        ollama.restart()  # same port, fresh request log: anything sent from now on is recorded
        results = [await llm.chat_detailed(HI) for _ in range(3)]
    assert [r.provider for r in results] == ["lmstudio"] * 3
    assert count(ollama, OLLAMA_CHAT) == 0
    assert "[INFO] Ollama unavailable, switched to LMStudio provider" in log.lines


async def test_both_down_message_names_each_provider_reason(make_llm: MakeLLM) -> None:
    """Both refused → AllProvidersFailed (a DemiError): the guide's text, then each reason."""
    async with make_llm(dead_url(), dead_url()) as llm:
        with pytest.raises(AllProvidersFailed) as info:
            await llm.chat(HI)
    error = info.value
    assert isinstance(error, DemiError)
    message = str(error)
    assert message.startswith("Both Ollama and LMStudio providers failed")
    assert "Ollama: Connection refused" in message
    assert "LMStudio: Connection refused" in message
    assert message.index("Ollama: Connection") < message.index("LMStudio: Connection")
    assert [e.provider for e in error.errors] == ["ollama", "lmstudio"]


async def test_both_killed_mid_session_message(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory
) -> None:
    """Both providers dying after a good start gives the same 'Both ... failed' error."""
    ollama, lmstudio = fake_server_factory("ollama"), fake_server_factory("lmstudio")
    async with make_llm(ollama, lmstudio) as llm:
        assert (await llm.chat_detailed(HI)).provider == "ollama"
        ollama.kill()
        lmstudio.kill()
        with pytest.raises(AllProvidersFailed) as info:
            await llm.chat(HI)
    message = str(info.value)
    assert message.startswith("Both Ollama and LMStudio providers failed")
    assert "Ollama: Connection refused" in message and "LMStudio: Connection refused" in message


async def test_lmstudio_as_primary_with_ollama_fallback(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """llm.provider: lmstudio → LM Studio serves first; when it fails, Ollama is the fallback."""
    async with make_llm(provider="lmstudio") as llm:
        assert llm.chain == ["lmstudio", "ollama"]
        assert llm.active_provider == "lmstudio"
        first = await llm.chat_detailed(HI)
        fake_lmstudio.control(mode="status", status=500)
        second = await llm.chat_detailed(HI)
    assert (first.provider, first.fallback_used) == ("lmstudio", False)
    assert count(fake_ollama, OLLAMA_CHAT) == 1
    assert (second.provider, second.text, second.fallback_used) == ("ollama", OLLAMA_REPLY, True)
    assert second.attempts[0][0] == "lmstudio" and "HTTP 500" in second.attempts[0][1]
    assert "[INFO] Using LMStudio provider" in log.lines
    assert log.containing("[WARNING] LMStudio inference failed: HTTP 500")
