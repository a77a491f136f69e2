"""Recovery and background health checks: switching back, no flapping, cached checks.

Where time matters the tests inject ``ManualClock``: the health monitor sleeps on it, so
``advance()`` is what makes a check due, and nothing waits out a real interval.
"""

from __future__ import annotations

import asyncio

import pytest

from src.llm import UnifiedLLMInference
from src.llm.clock import ManualClock
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_CHAT,
    OLLAMA_CHAT,
    OLLAMA_REPLY,
    OLLAMA_TAGS,
    LogCapture,
    MakeLLM,
    SteppingClock,
    count,
    dead_url,
    wait_until,
)
from tests.fakes.fixtures import FakeServerFactory

pytestmark = pytest.mark.timeout(60)

LMSTUDIO_MODELS = "/v1/models"


def switched_back(log: LogCapture) -> list[str]:
    return log.containing("switched back to Ollama")


async def test_restarted_primary_is_switched_back_after_two_good_checks(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_lmstudio: FakeServer,
    log: LogCapture,
) -> None:
    """Ollama restarted → DEMI returns to it by itself after 2 good checks, with an INFO line."""
    ollama = fake_server_factory("ollama")
    async with make_llm(ollama) as llm:
        assert (await llm.chat_detailed(HI)).provider == "ollama"
        ollama.kill()
        assert (await llm.chat_detailed(HI)).provider == "lmstudio"
        assert llm.active_provider == "lmstudio"
        ollama.restart()  # fresh request log: it records only the probes that follow
        await wait_until(lambda: llm.active_provider == "ollama", "the switch back to Ollama")
        probes = count(ollama, OLLAMA_TAGS)
        back = await llm.chat_detailed(HI)
    assert probes == 2  # recovery_successes defaults to 2
    assert (back.provider, back.text, back.fallback_used) == ("ollama", OLLAMA_REPLY, False)
    lines = switched_back(log)
    assert len(lines) == 1 and lines[0].startswith("[INFO] ")


async def test_recovery_successes_three_takes_three_checks(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_lmstudio: FakeServer,
    log: LogCapture,
) -> None:
    """recovery_successes=3: after 1 and 2 good checks DEMI stays on LM Studio; the 3rd returns."""
    ollama = fake_server_factory("ollama")
    clock = SteppingClock()
    async with make_llm(ollama, clock=clock, recovery_successes=3) as llm:
        await llm.chat(HI)
        ollama.kill()
        assert (await llm.chat_detailed(HI)).provider == "lmstudio"
        ollama.restart()
        for good_checks in (1, 2):
            await clock.step(1.0)  # past the probe spacing: exactly one probe becomes due
            await wait_until(
                lambda: llm.provider_status("ollama")["last_check"] == clock.wall(),
                f"good check {good_checks}",
            )
            assert count(ollama, OLLAMA_TAGS) == good_checks
            assert llm.provider_status("ollama")["circuit"] == "half_open"
            assert llm.active_provider == "lmstudio"
            assert not switched_back(log)
        await clock.step(1.0)
        await wait_until(lambda: llm.active_provider == "ollama", "the switch back to Ollama")
        assert count(ollama, OLLAMA_TAGS) == 3
        assert (await llm.chat_detailed(HI)).provider == "ollama"
    assert len(switched_back(log)) == 1


async def test_no_flapping_while_primary_is_down(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Once Ollama's breaker is open, messages do not each try an Ollama chat."""
    async with make_llm() as llm:
        fake_ollama.control(mode="status", status=500, routes="all")  # chat and health fail
        first = await llm.chat_detailed(HI)
        assert first.provider == "lmstudio" and first.attempts[0][0] == "ollama"
        assert llm.provider_status("ollama")["circuit"] == "open"
        fake_ollama.clear_requests()
        results = [await llm.chat_detailed(HI) for _ in range(5)]
        chats = count(fake_ollama, OLLAMA_CHAT)
    assert chats == 0
    assert [r.provider for r in results] == ["lmstudio"] * 5
    assert all(r.attempts == () and r.fallback_used for r in results)


async def test_background_check_detects_down_primary_without_messages(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """With no traffic at all, the due background check notices Ollama is down and switches."""
    clock = SteppingClock()
    async with make_llm(clock=clock) as llm:
        assert llm.active_provider == "ollama"
        fake_ollama.control(mode="status", status=500, routes="health")
        fake_ollama.clear_requests()
        await clock.step(61)  # past health_check_interval (60)
        await wait_until(lambda: llm.active_provider == "lmstudio", "the background switch")
        assert llm.provider_status("ollama")["circuit"] == "open"
        assert count(fake_ollama, OLLAMA_TAGS) == 1
    assert "[INFO] Ollama unavailable, switched to LMStudio provider" in log.lines
    assert count(fake_ollama, OLLAMA_CHAT) == 0 and count(fake_lmstudio, LMSTUDIO_CHAT) == 0


async def test_health_results_are_cached_within_the_interval(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Within health_check_interval nothing is re-probed: health() and the monitor use the cache."""
    clock = SteppingClock()
    async with make_llm(clock=clock) as llm:
        started = await llm.health()
        fake_ollama.clear_requests()
        fake_lmstudio.clear_requests()
        await clock.step(30)  # half the interval
        cached = await llm.health()
        assert count(fake_ollama, OLLAMA_TAGS) == 0
        assert count(fake_lmstudio, LMSTUDIO_MODELS) == 0
        assert cached["ollama"]["last_check"] == started["ollama"]["last_check"]
        await clock.step(31)  # now past the interval: the background loop re-checks, once
        await wait_until(
            lambda: llm.provider_status("ollama")["last_check"] == clock.wall()
            and llm.provider_status("lmstudio")["last_check"] == clock.wall(),
            "the due background checks",
        )
        assert count(fake_ollama, OLLAMA_TAGS) == 1
        assert count(fake_lmstudio, LMSTUDIO_MODELS) == 1
        await llm.health()  # fresh again: cached
        assert count(fake_ollama, OLLAMA_TAGS) == 1


async def test_health_check_interval_matches_config(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """llm._health_check_interval is llm.health_check_interval: 60 by default, else configured."""
    base = {
        "ollama": {"base_url": fake_ollama.url},
        "lmstudio": {"base_url": fake_lmstudio.url},
        "embedded": {"enabled": False},
    }
    default = UnifiedLLMInference({"llm": base}, log.logger)
    custom = UnifiedLLMInference({"llm": {**base, "health_check_interval": 17}}, log.logger)
    try:
        assert default._health_check_interval == 60
        assert custom._health_check_interval == 17
    finally:
        await default.close()
        await custom.close()


async def test_manual_clock_sleep_started_before_advance_is_woken() -> None:
    """A clock.sleep() scheduled the way the monitor does it is woken by a covering advance()."""
    clock = ManualClock()
    sleeper = asyncio.ensure_future(clock.sleep(5))  # exactly how HealthMonitor._loop sleeps
    clock.advance(10)
    try:
        async with asyncio.timeout(2):
            await sleeper
    finally:
        sleeper.cancel()


@pytest.mark.parametrize("restarted", ["ollama", "lmstudio"])
async def test_restart_while_idle_costs_the_next_message_nothing(
    restarted: str, make_llm: MakeLLM, fake_server_factory: FakeServerFactory, log: LogCapture
) -> None:
    """A provider restarted between messages serves the next one at the first try."""
    servers = {"ollama": fake_server_factory("ollama"),
               "lmstudio": fake_server_factory("lmstudio")}
    async with make_llm(servers["ollama"], servers["lmstudio"], clock=ManualClock()) as llm:
        llm.force_provider(restarted)
        await llm.chat(HI)
        await asyncio.to_thread(servers[restarted].restart)  # DEMI's loop keeps running
        result = await llm.chat_detailed(HI)
    assert result.provider == restarted and result.attempts == ()
    assert not log.containing("inference failed")




@pytest.mark.parametrize(
    "restarted", ["ollama", "lmstudio"]
)
async def test_restart_unseen_by_a_busy_loop_costs_the_next_message_nothing(
    restarted: str, make_llm: MakeLLM, fake_server_factory: FakeServerFactory, log: LogCapture
) -> None:
    """A restart DEMI's loop had no chance to notice still leaves the next message unharmed."""
    servers = {"ollama": fake_server_factory("ollama"),
               "lmstudio": fake_server_factory("lmstudio")}
    async with make_llm(servers["ollama"], servers["lmstudio"], clock=ManualClock()) as llm:
        llm.force_provider(restarted)
        await llm.chat(HI)
        servers[restarted].restart()  # synchronous: the loop is blocked meanwhile
        result = await llm.chat_detailed(HI)
    assert result.provider == restarted and result.attempts == ()
    assert not log.containing("inference failed")


async def test_active_provider_follows_a_breaker_closed_by_requests(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, log: LogCapture
) -> None:
    """Both down at start, LM Studio comes back and serves: active_provider becomes lmstudio."""
    lmstudio = fake_server_factory("lmstudio")
    lmstudio.kill()
    # A still clock: only requests (no background probe) can move the breakers here.
    async with make_llm(dead_url(), lmstudio, clock=ManualClock()) as llm:
        lmstudio.restart()
        results = [await llm.chat_detailed(HI) for _ in range(3)]
        assert llm.provider_status("lmstudio")["circuit"] == "closed"
        active = llm.active_provider
    assert [r.provider for r in results] == ["lmstudio"] * 3
    assert results[-1].attempts == ()  # the last message went to LM Studio first...
    assert active == "lmstudio"  # ...so that is where new requests go
    assert log.containing("witched to LMStudio provider")  # either switch line
