"""Busy servers over HTTP: fakes that serve one chat at a time and count how many they
were asked at once, DEMI in front with ``max_concurrency: 1`` on each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import ClientResponse

from src.testing.fakes.launcher import FakeServer
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import HI, Conductor
from tests.waiting import wait_until

CAPS = {"ollama": {"max_concurrency": 1}, "lmstudio": {"max_concurrency": 1},
        "hedge": {"enabled": False}, "retry": {"attempts": 0}}


@pytest.fixture
def one_slot_each(fake_ollama: FakeServer, fake_lmstudio: FakeServer) -> Iterator[None]:
    """Both fakes answer one chat at a time, slowly enough for requests to overlap."""
    for fake in (fake_ollama, fake_lmstudio):
        fake.control(slots=1, chunk_delay=0.02)
    try:
        yield
    finally:
        for fake in (fake_ollama, fake_lmstudio):
            fake.reset()


async def _chat(c: Conductor, path: str, stream: bool) -> tuple[ClientResponse, str]:
    resp = await c.client.post(path, json={"model": "demi", "messages": HI, "stream": stream})
    return resp, await resp.text()


@pytest.mark.parametrize("stream", [True, False])
async def test_never_more_in_flight_than_the_cap(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
    one_slot_each: None, stream: bool,
) -> None:
    """8 at once over two one-slot servers: every request answered, neither server ever
    asked two at once, the overflow spilled to LM Studio (not a fallback) or queued."""
    c = await make_conductor(llm=CAPS)
    results = await asyncio.gather(*(_chat(c, "/v1/chat/completions", stream)
                                     for _ in range(8)))
    assert [r.status for r, _ in results] == [200] * 8
    assert fake_ollama.config()["max_in_flight"] == 1
    assert fake_lmstudio.config()["max_in_flight"] == 1
    spilled = [r for r, _ in results if r.headers.get("X-DEMI-Spillover") == "ollama"]
    assert spilled and all(r.headers["X-DEMI-Provider"] == "lmstudio" for r in spilled)
    assert all(r.headers["X-DEMI-Fallback"] == "false" for r, _ in results)
    for name in ("ollama", "lmstudio"):
        row = c.llm.provider_status(name)
        assert row["circuit"] == "closed" and row["stats"]["failures"] == 0
        assert row["in_flight"] == 0 and row["max_concurrency"] == 1


@pytest.mark.parametrize("stream", [True, False])
async def test_overload_is_429_on_openai_and_503_on_ollama_with_retry_after(
    make_conductor: MakeConductor, one_slot_each: None, stream: bool,
) -> None:
    """Both slots taken and no room to wait (max_waiting: 0): the OpenAI face answers 429
    in OpenAI's shape, the Ollama face 503 in Ollama's words; both say when to retry."""
    c = await make_conductor(llm={**CAPS, "queue": {"max_waiting": 0, "max_wait": 5}})
    busy = [asyncio.create_task(_chat(c, "/v1/chat/completions", True)) for _ in range(2)]
    await wait_until(lambda: all(c.llm.provider_status(n)["in_flight"] == 1
                                 for n in ("ollama", "lmstudio")), "both slots taken")
    openai, _ = await _chat(c, "/v1/chat/completions", stream)
    assert openai.status == 429
    error = (await openai.json())["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "overloaded"
    assert int(openai.headers["Retry-After"]) >= 1
    ollama, _ = await _chat(c, "/api/chat", stream)
    assert ollama.status == 503
    assert (await ollama.json())["error"].startswith("server busy, please try again.")
    assert int(ollama.headers["Retry-After"]) >= 1
    assert [r.status for r, _ in await asyncio.gather(*busy)] == [200, 200]
    retried, _ = await _chat(c, "/v1/chat/completions", stream)  # after the wait: served
    assert retried.status == 200
    metrics = await (await c.client.get("/metrics")).text()
    assert "demi_queue_refused_total 2.0" in metrics
    assert 'demi_provider_max_concurrency{provider="ollama"} 1.0' in metrics
