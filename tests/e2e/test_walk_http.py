"""The walk's promises over HTTP: a conductor process over fake-server processes.

* reading ``/status`` (as the status page does every 2 s) never moves routing;
* a hedge target's 400 never beats a slow primary that is about to answer;
* sticky routing holds through history the providers only see trimmed;
* a client that leaves mid-hedge leaves no upstream sending.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import HI, OLLAMA_REPLY, ConductorProcess
from tests.e2e.test_fleet import ask, chats, client, fleet
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
HEDGE = {"enabled": True, "min_delay": 0.3, "delay_factor": 0.1, "max_percent": 100}
"""Hedge after 0.3 s whatever the primary measured, on every request."""


async def get(demi: ConductorProcess, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(demi.url + path) as resp:
        assert resp.status == 200
        await resp.read()


@pytest.mark.parametrize("routing", [
    {"strategy": "round_robin"},
    {"strategy": "canary", "canary": {"provider": "lmstudio", "percent": 50}},
], ids=["round_robin", "canary 50%"])
async def test_status_polling_never_moves_routing(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer, routing: dict[str, Any],
) -> None:
    """Warm standby on and /status or /metrics read before each request (as the status
    page and a Prometheus scrape do): round-robin alternates strictly over 40 requests,
    and a 50 % canary gets exactly 20 of them."""
    demi = fleet(make_demi, tmp_path, {"routing": routing,
                                       "warm_standby": {"enabled": True, "interval": 3600}})
    served = []
    async with client(demi) as oai:
        for i in range(40):
            await get(demi, "/status" if i % 2 else "/metrics")
            served.append((await ask(oai))[0])
    assert served.count("lmstudio") == 20 and served.count("ollama") == 20
    if routing["strategy"] == "round_robin":
        assert all(a != b for a, b in itertools.pairwise(served))


async def test_slow_primary_beats_a_hedge_targets_400(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Ollama's first token comes after the hedge delay; LM Studio, asked as the hedge,
    answers 400: the caller gets Ollama's answer, 3 times of 3, and nobody is blamed."""
    ollama_fake.control(first_token_delay=0.9)
    lmstudio_fake.control(mode="status", status=400, message="this server says no")
    demi = fleet(make_demi, tmp_path, {"hedge": HEDGE})
    async with client(demi) as oai:
        answers = [await ask(oai) for _ in range(3)]
    assert answers == [("ollama", OLLAMA_REPLY)] * 3
    assert len(chats(lmstudio_fake)) == 3  # every request was hedged, and refused there
    status = demi.get_json("/status")
    for name in ("ollama", "lmstudio"):
        assert status["providers"][name]["circuit"] == "closed"
        assert status["providers"][name]["stats"]["failures"] == 0
    assert status["providers"]["lmstudio"]["stats"]["rejections"] == 3


async def test_sticky_routing_through_trimmed_history(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """A long conversation (trimmed to fit 256-token context windows) under round-robin:
    every turn goes back to the provider that answered the first."""
    demi = fleet(make_demi, tmp_path, {"routing": {"strategy": "round_robin"},
                                       "ollama": {"context_window": 256},
                                       "lmstudio": {"context_window": 256}})
    conversation: list[dict[str, Any]] = []
    for i in range(10):
        conversation += [{"role": "user", "content": f"question {i} " + "lorem " * 40},
                         {"role": "assistant", "content": f"answer {i} " + "ipsum " * 40}]
    served = []
    async with client(demi) as oai:
        turn = [*conversation, {"role": "user", "content": "and now?"}]
        for n in range(6):
            provider, text = await ask(oai, turn)
            served.append(provider)
            turn = [*turn, {"role": "assistant", "content": text},
                    {"role": "user", "content": f"more {n}"}]
    assert served == [served[0]] * 6
    fake = ollama_fake if served[0] == "ollama" else lmstudio_fake
    assert len(chats(fake)[0]["json"]["messages"]) < len(conversation)  # it was trimmed
    sticky = demi.get_json("/status")["sticky"]
    assert sticky["hits"] == 5


async def test_a_client_leaving_mid_hedge_leaves_no_upstream_sending(
    make_demi: MakeConductor, tmp_path: Path, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Both servers hold the request open; the hedge is in flight when the client hangs
    up: DEMI closes both upstream connections, and stays healthy for the next request."""
    ollama_fake.control(mode="hang", times=1)
    lmstudio_fake.control(mode="hang", times=1)
    demi = fleet(make_demi, tmp_path, {"hedge": HEDGE})
    body = {"model": "demi", "messages": HI, "stream": True}
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(session.post(demi.url + "/v1/chat/completions",
                                                   json=body))
        await wait_until(lambda: ollama_fake.config()["hanging"] == 1
                         and lmstudio_fake.config()["hanging"] == 1, "the hedge to start")
        request.cancel()  # the client goes away: its connection is closed
        with pytest.raises(asyncio.CancelledError):
            await request
    await wait_until(lambda: ollama_fake.config()["hanging"] == 0
                     and lmstudio_fake.config()["hanging"] == 0,
                     "DEMI to close both upstream connections")
    async with client(demi) as oai:
        assert await ask(oai) == ("ollama", OLLAMA_REPLY)
