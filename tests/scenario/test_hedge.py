"""Hedged first token: a silent provider gets company after the hedge delay, not its timeout.

No timing thresholds: the first-token timeouts are long (30 s) and the hedge delay short, so
a reply from LM Studio with no Ollama failure recorded can only come from a hedge.
"""

from __future__ import annotations

import asyncio

import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conftest import HI, LMSTUDIO_REPLY, OLLAMA_REPLY, MakeLLM, wait_until

pytestmark = pytest.mark.timeout(60)
SLOW = {"ollama": {"timeout": 30.0}, "lmstudio": {"timeout": 30.0}}
HEDGE = {"enabled": True, "min_delay": 0.2, "delay_factor": 2.0, "max_percent": 100}


async def test_hung_primary_is_hedged_and_the_loser_disconnected(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Ollama hangs: LM Studio answers via a hedge; Ollama's connection is closed, and its
    circuit opens at once, so the next request does not wait for it again."""
    fake_ollama.control(mode="hang")
    async with make_llm(hedge=HEDGE, **SLOW) as llm:
        async with asyncio.timeout(20):
            result = await llm.chat_detailed(HI)
        report = llm.status_report()
        ollama = llm.provider_status("ollama")
        assert ollama["circuit"] == "open"
        assert "no first token within 0.2s; LMStudio answered first" in ollama["last_error"]
        assert llm.active_provider == "lmstudio"
    assert (result.provider, result.text) == ("lmstudio", LMSTUDIO_REPLY)
    assert result.fallback_used and result.attempts == ()
    assert report["hedge"] == {"enabled": True, "requests": 1, "hedged": 1, "hedge_wins": 1}
    await wait_until(lambda: fake_ollama.config()["hanging"] == 0,
                     "the hedge loser's connection to close")


async def test_slow_primary_wins_and_the_hedge_is_cancelled(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Ollama is slow, LM Studio (the hedge) hangs: Ollama's answer wins, LM Studio is cut."""
    fake_ollama.control(first_token_delay=1.0)
    fake_lmstudio.control(mode="hang")
    async with make_llm(hedge=HEDGE, **SLOW) as llm:
        async with asyncio.timeout(20):
            result = await llm.chat_detailed(HI)
        report = llm.status_report()
    assert (result.provider, result.text) == ("ollama", OLLAMA_REPLY)
    assert report["hedge"]["hedged"] == 1 and report["hedge"]["hedge_wins"] == 0
    await wait_until(lambda: fake_lmstudio.config()["hanging"] == 0,
                     "the losing hedge's connection to close")


async def test_no_budget_no_hedge(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """max_percent 0: a slow primary is waited for; LM Studio is never asked."""
    fake_ollama.control(first_token_delay=0.6)
    async with make_llm(hedge={**HEDGE, "max_percent": 0}, **SLOW) as llm:
        result = await llm.chat_detailed(HI)
        assert llm.status_report()["hedge"]["hedged"] == 0
    assert result.provider == "ollama"
    assert not [r for r in fake_lmstudio.requests() if r["path"].endswith("/completions")]


async def test_hedge_disabled_waits_for_the_first_token_bound(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """hedge.enabled false: a hung Ollama fails at its own timeout, then LM Studio answers."""
    fake_ollama.control(mode="hang")
    async with make_llm(hedge={**HEDGE, "enabled": False}, ollama={"timeout": 0.5}) as llm:
        result = await llm.chat_detailed(HI)
    assert result.provider == "lmstudio"
    assert result.attempts == (("ollama", "no first token within 0.5s"),)


async def test_healthy_primary_never_hedges(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Fast replies stay under the hedge delay: 20 requests, 0 hedges, 0 extra upstream calls."""
    async with make_llm(hedge=HEDGE, **SLOW) as llm:
        results = [await llm.chat_detailed(HI) for _ in range(20)]
        report = llm.status_report()["hedge"]
    assert {r.provider for r in results} == {"ollama"}
    assert report["requests"] == 20 and report["hedged"] == 0
    assert not [r for r in fake_lmstudio.requests() if r["path"].endswith("/completions")]
