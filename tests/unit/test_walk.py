"""The chain walk in process, with scripted providers: its interleavings, exactly.

Hedge × failover × continuation × cancellation × routing, each driven by
``src.testing.scripted``: replies are held back by events the test sets, so the order of
events is the test's, not the scheduler's. Only the hedge delay is real time (a short
configured one).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from src.core.config import deep_merge
from src.llm import (
    EmbeddedModelLoading,
    RequestRejected,
    StreamInterrupted,
    UnifiedLLMInference,
)
from src.llm.clock import ManualClock
from src.testing.scripted import (
    Crash,
    Cut,
    Fail,
    Hang,
    Reply,
    ScriptedProvider,
    rejected,
)
from tests.conftest import HI, LogCapture
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(30)
BUILTIN = ("ollama", "lmstudio", "embedded")


def walk_llm(log: LogCapture, *providers: ScriptedProvider, **llm: Any) -> UnifiedLLMInference:
    """A facade over ``providers`` in the given order; hedging after 50 ms, no retry rounds,
    health checks only at start (the clock never moves)."""
    names = [p.name for p in providers]
    extras = [{"name": n, "base_url": "http://127.0.0.1:9"} for n in names if n not in BUILTIN]
    base: dict[str, Any] = {
        "order": names, "providers": extras, "embedded": {"enabled": "embedded" in names},
        "hedge": {"min_delay": 0.05}, "retry": {"attempts": 0},
        "health_check_interval": 3600,
    }
    return UnifiedLLMInference({"llm": deep_merge(base, llm)}, log.logger, clock=ManualClock(),
                               providers={p.name: p for p in providers})


def stats(llm: UnifiedLLMInference, name: str) -> dict[str, Any]:
    return llm.provider_status(name)["stats"]


async def test_a_hedge_targets_400_never_beats_a_slow_primary(log: LogCapture) -> None:
    """The primary is slow, the hedge target answers 400: the race goes on, the primary's
    answer is the caller's, and the refusal is counted as nothing but a refusal."""
    slow = asyncio.Event()
    ollama = ScriptedProvider("ollama", Reply("slow but sure", gate=slow))
    lmstudio = ScriptedProvider("lmstudio", rejected("no tools here"))
    async with walk_llm(log, ollama, lmstudio) as llm:
        task = asyncio.create_task(llm.chat_detailed(HI))
        await wait_until(lambda: stats(llm, "lmstudio")["rejections"] == 1, "the refusal")
        assert not task.done()
        slow.set()
        result = await task
        report = llm.status_report()
    assert (result.provider, result.text, result.fallback_used) == ("ollama", "slow but sure",
                                                                    False)
    for name in ("ollama", "lmstudio"):
        assert report["providers"][name]["circuit"] == "closed"
        assert report["providers"][name]["stats"]["failures"] == 0
    assert report["hedge"]["hedged"] == 1 and report["hedge"]["hedge_wins"] == 0
    assert lmstudio.counts.abandoned == 0 and ollama.counts.finished == 1


async def test_cancelling_during_a_hedge_closes_both_upstreams(log: LogCapture) -> None:
    """The caller goes away while the primary and its hedge are both waiting: the
    cancellation reaches both attempts, both upstreams close, and nobody is blamed."""
    ollama = ScriptedProvider("ollama", Hang())
    lmstudio = ScriptedProvider("lmstudio", Hang())
    async with walk_llm(log, ollama, lmstudio) as llm:
        task = asyncio.create_task(llm.chat(HI))
        await wait_until(lambda: ollama.counts.open == lmstudio.counts.open == 1,
                         "the hedge to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        failures = [stats(llm, n)["failures"] for n in ("ollama", "lmstudio")]
    assert (ollama.counts.open, lmstudio.counts.open) == (0, 0)
    assert (ollama.counts.abandoned, lmstudio.counts.abandoned) == (1, 1)
    assert failures == [0, 0]


async def test_a_cancellation_while_the_loser_closes_is_not_swallowed(
    log: LogCapture,
) -> None:
    """The hedge won and the silent primary's upstream is slow to close; the caller is
    cancelled meanwhile: the request ends with CancelledError, it does not run on."""
    closing = asyncio.Event()
    ollama = ScriptedProvider("ollama", Hang(closing=closing))
    lmstudio = ScriptedProvider("lmstudio", Reply("the hedge answered"))
    async with walk_llm(log, ollama, lmstudio) as llm:
        task = asyncio.create_task(llm.chat(HI))
        await wait_until(lambda: ollama.counts.closing == 1, "the loser to start closing")
        task.cancel()
        await asyncio.sleep(0)  # the cancellation lands while the loser is closing
        closing.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert ollama.counts.open == 0 and lmstudio.counts.open == 0


async def test_a_hedge_that_breaks_is_continued_by_the_next_provider(log: LogCapture) -> None:
    """Primary silent, the hedge wins and breaks after two pieces, the third provider
    continues the same answer; the silent primary lost the hedge (its circuit opens)."""
    ollama = ScriptedProvider("ollama", Hang())
    lmstudio = ScriptedProvider("lmstudio", Cut("One two three four", after=2))
    box = ScriptedProvider("box", Reply(" three four"))
    async with walk_llm(log, ollama, lmstudio, box) as llm:
        async with await llm.open_stream(HI) as reply:
            text = "".join([c.text async for c in reply])
        circuit = llm.provider_status("ollama")["circuit"]
    assert text == "One two three four"
    assert reply.providers == ["lmstudio", "box"] and reply.hedged
    assert box.requests[0].messages[-1] == {"role": "assistant", "content": "One two"}
    assert circuit == "open" and ollama.counts.abandoned == 1


async def test_a_broken_continuation_names_the_last_provider(log: LogCapture) -> None:
    """When the provider continuing a reply breaks too and none is left, the error names
    it, not the one that started the reply."""
    ollama = ScriptedProvider("ollama", Cut("one two three", after=1))
    box = ScriptedProvider("box", Cut(" two three", after=1), display_name="Box")
    async with walk_llm(log, ollama, box, hedge={"enabled": False}) as llm:
        reply = await llm.open_stream(HI)
        with pytest.raises(StreamInterrupted) as info:
            async with reply:
                async for _ in reply:
                    pass
    assert "The Box stream broke" in str(info.value)


@pytest.mark.parametrize("strategy", [
    {"strategy": "round_robin"},
    {"strategy": "canary", "canary": {"provider": "lmstudio", "percent": 50}},
])
async def test_reading_the_status_never_moves_routing(
    log: LogCapture, strategy: dict[str, Any],
) -> None:
    """With warm standby on and the status read between every two requests, round-robin
    alternates strictly and a 50 % canary gets exactly half of them."""
    ollama, lmstudio = ScriptedProvider("ollama"), ScriptedProvider("lmstudio")
    async with walk_llm(log, ollama, lmstudio, routing=strategy,
                        warm_standby={"enabled": True, "interval": 3600}) as llm:
        served = []
        for _ in range(20):
            llm.status_report()
            served.append((await llm.chat_detailed(HI)).provider)
            assert llm.standby is not None and llm.standby.standby() is not None
    assert served.count("lmstudio") == 10
    if strategy["strategy"] == "round_robin":
        assert all(a != b for a, b in itertools.pairwise(served))


async def test_warm_standby_warms_the_provider_after_the_active_one(log: LogCapture) -> None:
    """The standby is the next usable provider in the strategy's ranking; asking who it is
    changes nothing, and a tick warms it."""
    ollama, lmstudio = ScriptedProvider("ollama"), ScriptedProvider("lmstudio")
    async with walk_llm(log, ollama, lmstudio,
                        warm_standby={"enabled": True, "interval": 3600}) as llm:
        assert llm.standby is not None
        assert {llm.standby.standby() for _ in range(5)} == {"lmstudio"}
        assert await llm.standby.tick() == "lmstudio"
    assert (ollama.counts.warmed, lmstudio.counts.warmed) >= (0, 1)


async def test_a_loading_model_is_waited_for_when_nothing_else_answers(
    log: LogCapture,
) -> None:
    """Both servers refuse connections and the embedded model is still loading: the
    request waits for it (once) and it answers; loading is held against nobody."""
    ollama = ScriptedProvider("ollama", then=Fail())
    lmstudio = ScriptedProvider("lmstudio", then=Fail())
    embedded = ScriptedProvider("embedded", Fail(EmbeddedModelLoading, "still loading"),
                                kind="embedded")
    async with walk_llm(log, ollama, lmstudio, embedded) as llm:
        result = await llm.chat_detailed(HI)
        circuit = llm.provider_status("embedded")["circuit"]
    assert (result.provider, result.fallback_used) == ("embedded", True)
    assert embedded.counts.waited_ready == 1 and circuit == "closed"


async def test_sticky_routing_matches_through_trimmed_history(log: LogCapture) -> None:
    """A conversation too long for the providers' context windows is trimmed for them, yet
    its next turn still goes back to the provider that answered the last one."""
    ollama = ScriptedProvider("ollama", context_window=256)
    lmstudio = ScriptedProvider("lmstudio", context_window=256)
    history: list[dict[str, Any]] = []
    for i in range(12):
        history += [{"role": "user", "content": f"question {i} " + "words " * 30},
                    {"role": "assistant", "content": f"answer {i} " + "words " * 30}]
    async with walk_llm(log, ollama, lmstudio, routing={"strategy": "round_robin"}) as llm:
        turn = [*history, {"role": "user", "content": "next"}]
        first = await llm.chat_detailed(turn)
        served = [first.provider]
        for n in range(4):
            turn = [*turn, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": f"more {n}"}]
            served.append((await llm.chat_detailed(turn)).provider)
        sticky = llm.status_report()["sticky"]
    sent = (ollama if first.provider == "ollama" else lmstudio).requests[0]
    assert len(sent.messages) < len(history)  # the provider got a trimmed copy
    assert served == [first.provider] * 5
    assert sticky["hits"] == 4


async def test_a_reply_dropped_half_way_closes_its_upstream(log: LogCapture) -> None:
    """Leaving ``async with reply`` after one chunk closes the provider's stream at once."""
    ollama = ScriptedProvider("ollama", Reply("a long answer of many words"))
    async with walk_llm(log, ollama) as llm:
        async with await llm.open_stream(HI) as reply:
            async for chunk in reply:
                assert chunk.text == "a"
                break
        assert ollama.counts.open == 0 and ollama.counts.abandoned == 1


async def test_every_provider_refusing_is_a_rejection_with_each_reason(log: LogCapture) -> None:
    """All servers answer 400: RequestRejected with both reasons; no circuit opens."""
    ollama = ScriptedProvider("ollama", rejected("bad option"))
    lmstudio = ScriptedProvider("lmstudio", rejected("too long"))
    async with walk_llm(log, ollama, lmstudio) as llm:
        with pytest.raises(RequestRejected) as info:
            await llm.chat(HI)
        circuits = {llm.provider_status(n)["circuit"] for n in ("ollama", "lmstudio")}
    assert "bad option" in str(info.value) and "too long" in str(info.value)
    assert circuits == {"closed"}


@pytest.mark.parametrize("hedged", [False, True], ids=["alone", "during a hedge"])
async def test_a_bug_inside_a_provider_propagates_as_itself(
    log: LogCapture, hedged: bool,
) -> None:
    """A DEMI bug escaping a provider reaches the caller as that exception (never wrapped
    in an exception group by the race), and counts against no provider."""
    later = asyncio.Event()
    steps: dict[str, Callable[[], ScriptedProvider]] = {
        "alone": lambda: ScriptedProvider("ollama", Crash()),
        "hedged": lambda: ScriptedProvider("ollama", Crash(gate=later)),
    }
    ollama = steps["hedged" if hedged else "alone"]()
    lmstudio = ScriptedProvider("lmstudio", Hang())
    async with walk_llm(log, ollama, lmstudio) as llm:
        task = asyncio.create_task(llm.chat(HI))
        if hedged:
            await wait_until(lambda: lmstudio.counts.open == 1, "the hedge to start")
            later.set()
        with pytest.raises(TypeError, match="a bug in the provider"):
            await task
        failures = stats(llm, "ollama")["failures"]
    assert failures == 0
    assert lmstudio.counts.open == 0


async def test_serving_counts_last_until_each_reply_is_closed(log: LogCapture) -> None:
    """The passive-health count: a provider serves from its request until its reply is
    closed; a hedge's loser stops serving when it loses, the winner when the caller closes."""
    slow = asyncio.Event()
    ollama = ScriptedProvider("ollama", Reply("too late", gate=slow))
    lmstudio = ScriptedProvider("lmstudio", Reply("one two three"))
    async with walk_llm(log, ollama, lmstudio) as llm:
        serving = {n: (lambda n=n: llm.registry[n].serving) for n in ("ollama", "lmstudio")}
        async with await llm.open_stream(HI) as reply:
            assert reply.provider == "lmstudio"  # the hedge won; ollama's attempt is closed
            assert (serving["ollama"](), serving["lmstudio"]()) == (0, 1)
            async for _ in reply:
                assert serving["lmstudio"]() == 1
        assert (serving["ollama"](), serving["lmstudio"]()) == (0, 0)
        assert ollama.counts.abandoned == 1 and lmstudio.counts.finished == 1
