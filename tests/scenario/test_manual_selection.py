"""force_provider(), active_provider and health(): the guide's 'manual selection' section."""

from __future__ import annotations

import pytest

from src.llm import AllProvidersFailed, DemiError, UnknownProviderError
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_REPLY,
    OLLAMA_CHAT,
    LogCapture,
    MakeLLM,
    count,
)

pytestmark = pytest.mark.timeout(60)


async def test_force_provider_pins_then_none_restores_automatic(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """force_provider("lmstudio") pins though Ollama is up; force_provider(None) goes back."""
    async with make_llm() as llm:
        assert (llm.active_provider, llm.forced_provider) == ("ollama", None)
        llm.force_provider("lmstudio")
        assert (llm.active_provider, llm.forced_provider) == ("lmstudio", "lmstudio")
        pinned = [await llm.chat_detailed(HI) for _ in range(3)]
        pinned_ollama_chats = count(fake_ollama, OLLAMA_CHAT)
        llm.force_provider(None)
        assert (llm.active_provider, llm.forced_provider) == ("ollama", None)
        automatic = await llm.chat_detailed(HI)
    assert [(r.provider, r.text) for r in pinned] == [("lmstudio", LMSTUDIO_REPLY)] * 3
    assert pinned_ollama_chats == 0
    assert automatic.provider == "ollama"
    assert count(fake_ollama, OLLAMA_CHAT) == 1


async def test_pinned_provider_failing_does_not_fall_back(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """A pinned provider that fails raises; the other provider is not used behind the pin."""
    fake_lmstudio.control(mode="status", status=500)
    async with make_llm() as llm:
        llm.force_provider("lmstudio")
        with pytest.raises(AllProvidersFailed) as info:
            await llm.chat(HI)
    assert "LMStudio provider failed (pinned with force_provider)" in str(info.value)
    assert "force_provider(None)" in str(info.value)
    assert count(fake_ollama, OLLAMA_CHAT) == 0


async def test_force_unknown_provider_names_configured_ones(
    make_llm: MakeLLM, log: LogCapture
) -> None:
    """force_provider("gpt-5") → UnknownProviderError naming 'ollama' and 'lmstudio'; state kept."""
    async with make_llm() as llm:
        llm.force_provider("lmstudio")
        with pytest.raises(UnknownProviderError) as info:
            llm.force_provider("gpt-5")
        assert llm.active_provider == "lmstudio"
    message = str(info.value)
    assert isinstance(info.value, DemiError)
    assert "'gpt-5'" in message and "'ollama'" in message and "'lmstudio'" in message


async def test_force_provider_logs_pin_and_release(make_llm: MakeLLM, log: LogCapture) -> None:
    """Pinning and releasing are logged at INFO with the provider in use."""
    async with make_llm() as llm:
        llm.force_provider("lmstudio")
        llm.force_provider(None)
    assert "[INFO] Using LMStudio provider (pinned by force_provider)" in log.lines
    assert log.containing("[INFO] Automatic provider selection restored; using Ollama provider")


async def test_health_returns_per_provider_dicts(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """health() → {name: {healthy, last_check, last_error, latency_ms, ...}} for each provider."""
    async with make_llm() as llm:
        up = await llm.health()
        fake_ollama.control(models=[])
        refreshed = await llm.health(refresh=True)
    assert set(up) == {"ollama", "lmstudio"}
    for report in up.values():
        assert {"healthy", "last_check", "last_error", "latency_ms"} <= set(report)
        assert report["healthy"] is True and report["last_error"] is None
        assert isinstance(report["last_check"], float)
        assert report["latency_ms"] >= 0
    assert up["ollama"]["active"] is True and up["lmstudio"]["active"] is False
    assert refreshed["ollama"]["healthy"] is False
    assert "ollama pull" in refreshed["ollama"]["last_error"]
    assert refreshed["ollama"]["last_check"] >= up["ollama"]["last_check"]
    assert refreshed["lmstudio"]["healthy"] is True


async def test_active_provider_follows_failover_state(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """active_provider names where the next request goes: ollama, then lmstudio after a failure."""
    async with make_llm() as llm:
        before = llm.active_provider
        fake_ollama.control(mode="status", status=500, routes="all")
        await llm.chat(HI)
        after = llm.active_provider
        statuses = await llm.health()
    assert (before, after) == ("ollama", "lmstudio")
    assert statuses["lmstudio"]["active"] is True and statuses["ollama"]["active"] is False


async def test_active_provider_follows_the_routing_strategy(
    make_llm: MakeLLM, log: LogCapture
) -> None:
    """With 'nearest' preferring LM Studio's region, active_provider is lmstudio (where
    requests really go first), and start-up says so without claiming Ollama is down."""
    routing = {"strategy": "nearest", "region": "eu"}
    async with make_llm(routing=routing, lmstudio={"region": "eu"}) as llm:
        assert llm.active_provider == "lmstudio"
        result = await llm.chat_detailed(HI)
        assert (result.provider, result.fallback_used) == ("lmstudio", False)
    assert log.count("[INFO] Using LMStudio provider") == 1
    assert not log.containing("unavailable")
