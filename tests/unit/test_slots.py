"""Busy servers, in process: slots per provider, spillover, DEMI's bounded queue.

Scripted providers stand in for servers; a reply that was opened and not closed holds its
provider's slot, so the test decides exactly which slots are taken. Only the queue's
``max_wait`` is real time (a short one).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from src.core.config import deep_merge
from src.llm import Overloaded, ReplyStream, UnifiedLLMInference
from src.llm.clock import ManualClock
from src.llm.state.slots import SlotQueue, retry_after
from src.testing.scripted import ScriptedProvider
from tests.conftest import HI, LogCapture
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(30)
BUILTIN = ("ollama", "lmstudio", "embedded")


def busy_llm(log: LogCapture, *providers: ScriptedProvider, caps: dict[str, int],
             **llm: Any) -> UnifiedLLMInference:
    """A facade over ``providers`` (in order) with the given caps; no hedging, no retry."""
    names = [p.name for p in providers]
    extras = [{"name": n, "base_url": "http://127.0.0.1:9", "max_concurrency": caps.get(n)}
              for n in names if n not in BUILTIN]
    base: dict[str, Any] = {
        "order": names, "providers": extras, "embedded": {"enabled": "embedded" in names},
        "hedge": {"enabled": False}, "retry": {"attempts": 0},
        "health_check_interval": 3600, "queue": {"max_wait": 5, "max_waiting": 8},
    }
    for name in BUILTIN:
        if name in caps:
            base[name] = {"max_concurrency": caps[name]}
    return UnifiedLLMInference({"llm": deep_merge(base, llm)}, log.logger, clock=ManualClock(),
                               providers={p.name: p for p in providers})


def in_flight(llm: UnifiedLLMInference) -> dict[str, int]:
    return {n: llm.registry[n].serving for n in llm.chain}


async def test_a_full_primary_spills_over_and_is_no_fallback(log: LogCapture) -> None:
    """Ollama (cap 1) busy: the next request goes to LM Studio, named as a spillover; no
    circuit opens, no guide switch line, and the fallback flag stays false."""
    ollama, lmstudio = ScriptedProvider("ollama"), ScriptedProvider("lmstudio")
    async with busy_llm(log, ollama, lmstudio, caps={"ollama": 1, "lmstudio": 1}) as llm:
        first = await llm.open_stream(HI)
        second = await llm.open_stream(HI)
        assert (first.provider, first.spilled_from) == ("ollama", None)
        assert (second.provider, second.spilled_from) == ("lmstudio", "ollama")
        assert not second.fallback_used
        assert in_flight(llm) == {"ollama": 1, "lmstudio": 1}
        for reply in (first, second):
            await reply.collect()
            await reply.aclose()
        assert in_flight(llm) == {"ollama": 0, "lmstudio": 0}
        third = await llm.chat_detailed(HI)  # the primary is free again: it is asked first
        status = llm.status_report()
    assert third.provider == "ollama"
    assert status["providers"]["ollama"]["spillovers"] == 1
    assert status["providers"]["ollama"]["circuit"] == "closed"
    assert status["providers"]["ollama"]["stats"]["failures"] == 0
    assert not log.containing("Switching") and not log.containing("inference failed")


async def test_when_all_are_full_requests_wait_in_order(log: LogCapture) -> None:
    """Every slot taken: requests queue first come first served and each takes the first
    slot that frees; never more in flight than a cap."""
    ollama = ScriptedProvider("ollama")
    async with busy_llm(log, ollama, caps={"ollama": 1}) as llm:
        holding = await llm.open_stream(HI)
        order: list[int] = []

        async def one(i: int) -> None:
            async with await llm.open_stream(HI) as reply:
                order.append(i)
                assert llm.registry["ollama"].serving == 1
                await reply.collect()

        waiters = []
        for i in range(3):
            waiters.append(asyncio.create_task(one(i)))
            await wait_until(lambda i=i: llm.walker.queue.waiting == i + 1, "queued")
        assert llm.status_report()["queue"]["waiting"] == 3
        await holding.aclose()
        await asyncio.gather(*waiters)
    assert order == [0, 1, 2]
    assert ollama.counts.open == 0


async def test_a_full_queue_is_refused_at_once_with_retry_after(log: LogCapture) -> None:
    """Past max_waiting the next request is Overloaded at once; its retry_after comes from
    the measured service time, not a constant."""
    ollama = ScriptedProvider("ollama")
    async with busy_llm(log, ollama, caps={"ollama": 1},
                        queue={"max_waiting": 1, "max_wait": 5}) as llm:
        llm.registry["ollama"].stats.latency_ewma = 4.0  # as if measured
        holding = await llm.open_stream(HI)
        waiter = asyncio.create_task(llm.chat(HI))
        await wait_until(lambda: llm.walker.queue.waiting == 1, "one waiting")
        with pytest.raises(Overloaded) as refused:
            await llm.chat(HI)
        assert refused.value.retry_after == 8.0  # two requests ahead, 4 s each, one slot
        assert "max_waiting" in str(refused.value)
        await holding.aclose()
        assert await waiter
        assert llm.status_report()["queue"]["refused"] == 1


async def test_the_wait_is_bounded(log: LogCapture) -> None:
    """A request that finds no slot within max_wait is refused, and leaves the queue."""
    async with busy_llm(log, ScriptedProvider("ollama"), caps={"ollama": 1},
                        queue={"max_wait": 0.05, "max_waiting": 4}) as llm:
        holding = await llm.open_stream(HI)
        with pytest.raises(Overloaded, match="max_wait"):
            await llm.chat(HI)
        assert llm.walker.queue.waiting == 0
        await holding.aclose()


async def test_a_waiter_that_leaves_frees_its_place(log: LogCapture) -> None:
    """A waiting caller cancelled (its client went away) never takes a slot; the one
    behind it gets the slot instead."""
    ollama = ScriptedProvider("ollama")
    async with busy_llm(log, ollama, caps={"ollama": 1}) as llm:
        holding = await llm.open_stream(HI)
        leaver = asyncio.create_task(llm.chat(HI))
        await wait_until(lambda: llm.walker.queue.waiting == 1, "the first waiter")
        stayer = asyncio.create_task(llm.chat(HI))
        await wait_until(lambda: llm.walker.queue.waiting == 2, "the second waiter")
        leaver.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaver
        assert llm.walker.queue.waiting == 1
        await holding.aclose()
        assert await stayer
    assert len(ollama.requests) == 2  # the holder and the stayer; the leaver sent nothing


@pytest.mark.parametrize("strategy", ["failover", "round_robin", "least_busy"])
async def test_spillover_under_every_strategy(log: LogCapture, strategy: str) -> None:
    """Whatever the strategy prefers, a provider at its cap is passed over: with one slot
    each and one taken, every next request goes to the free provider, and whenever the
    strategy's choice was the full one, that counts as its spillover."""
    a, b = ScriptedProvider("ollama"), ScriptedProvider("lmstudio")
    async with busy_llm(log, a, b, caps={"ollama": 1, "lmstudio": 1},
                        routing={"strategy": strategy, "sticky": False}) as llm:
        held = await llm.open_stream(HI)
        other = "lmstudio" if held.provider == "ollama" else "ollama"
        served = [(await llm.chat_detailed(HI)).provider for _ in range(4)]
        spills = llm.status_report()["providers"][held.provider]["spillovers"]
        await held.aclose()
    assert served == [other] * 4
    # failover prefers the full primary every time; round_robin every other time;
    # least_busy ranks the full one last itself, so nothing is passed over.
    assert spills == {"failover": 4, "round_robin": 2, "least_busy": 0}[strategy]


async def test_least_busy_ranks_by_load_then_first_token_time(log: LogCapture) -> None:
    """least_busy: the emptier provider first; equal load, the faster first token."""
    a, b = ScriptedProvider("ollama"), ScriptedProvider("lmstudio")
    async with busy_llm(log, a, b, caps={"ollama": 2, "lmstudio": 2},
                        routing={"strategy": "least_busy"}) as llm:
        llm.registry["ollama"].stats.ttft_ewma = 0.5
        llm.registry["lmstudio"].stats.ttft_ewma = 0.1
        assert llm.walker.ranking() == ["lmstudio", "ollama"]
        held = await llm.open_stream(HI)  # goes to lmstudio: now half full
        assert held.provider == "lmstudio"
        assert llm.walker.ranking() == ["ollama", "lmstudio"]
        assert llm.walker.ranking() == ["ollama", "lmstudio"]  # ranking moved nothing
        await held.aclose()


@pytest.mark.parametrize("spillover", [False, True])
async def test_the_embedded_model_takes_spilled_traffic_only_when_asked(
    log: LogCapture, spillover: bool,
) -> None:
    """With the only server busy, the embedded model answers only with spillover: true;
    otherwise the request waits for the server's slot."""
    server = ScriptedProvider("ollama")
    embedded = ScriptedProvider("embedded", kind="embedded")
    async with busy_llm(log, server, embedded, caps={"ollama": 1},
                        embedded={"spillover": spillover}) as llm:
        holding = await llm.open_stream(HI)
        task = asyncio.create_task(llm.chat_detailed(HI))
        if spillover:
            assert (await task).provider == "embedded"
        else:
            await wait_until(lambda: llm.walker.queue.waiting == 1, "waiting for the server")
            assert not embedded.requests
            await holding.aclose()
            assert (await task).provider == "ollama"
        await holding.aclose()


async def test_slot_counts_follow_every_exit(log: LogCapture) -> None:
    """A reply dropped half way releases its slot (the count is the registry's)."""
    ollama = ScriptedProvider("ollama")
    async with busy_llm(log, ollama, caps={"ollama": 1}) as llm:
        reply: ReplyStream = await llm.open_stream(HI)
        async for _ in reply:
            break
        await reply.aclose()
        assert llm.registry["ollama"].serving == 0
        assert (await llm.chat_detailed(HI)).provider == "ollama"


def test_retry_after_is_the_work_ahead_over_the_slots() -> None:
    assert retry_after(2.0, ahead=0, slots=1) == 2.0
    assert retry_after(2.0, ahead=5, slots=3) == 4.0
    assert retry_after(None, ahead=0, slots=1) >= 1.0
    assert retry_after(0.1, ahead=0, slots=4) == 1.0  # whole seconds, at least one


async def test_the_queue_hands_a_freed_slot_to_the_first_waiter() -> None:
    queue = SlotQueue(max_wait=5, max_waiting=4, retry_after=lambda n: 1.0)
    woke: list[int] = []

    async def wait(i: int) -> None:
        await queue.wait()
        woke.append(i)

    tasks = [asyncio.create_task(wait(i)) for i in range(3)]
    await wait_until(lambda: queue.waiting == 3, "three waiters")
    queue.slot_freed()
    await wait_until(lambda: woke == [0], "the first")
    assert bool(queue)
    queue.slot_freed()
    queue.slot_freed()
    await asyncio.gather(*tasks)
    assert woke == [0, 1, 2] and not queue


async def test_a_burst_of_refusals_is_told_to_come_back_one_after_another() -> None:
    """Each refused caller counts as work ahead of the next one, so their retries spread
    out instead of arriving together; a freed slot with nobody waiting forgives one."""
    queue = SlotQueue(max_wait=5, max_waiting=0, retry_after=lambda ahead: float(ahead + 1))
    waits = []
    for _ in range(4):
        with pytest.raises(Overloaded) as refused:
            await queue.wait()
        waits.append(refused.value.retry_after)
    assert waits == [1.0, 2.0, 3.0, 4.0]
    queue.slot_freed()
    with pytest.raises(Overloaded) as refused:
        await queue.wait()
    assert refused.value.retry_after == 4.0
