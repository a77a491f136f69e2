"""Mid-stream continuation (a stream cut after text is finished by the next provider) and
hedging, through the HTTP faces.

Both fakes have the same reply and continue it deterministically from a prefill, so the
seam is checkable: the caller's text must be exactly the reply, nothing lost or doubled.
"""

from __future__ import annotations

import json

import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import HI, OLLAMA_MODEL, ndjson, sse_json

REPLY = " ".join(f"w{i}" for i in range(60))
PRIMARY_OF = {"ollama": "lmstudio", "lmstudio": "ollama"}


@pytest.fixture
def same_reply(fake_ollama: FakeServer, fake_lmstudio: FakeServer) -> None:
    for fake in (fake_ollama, fake_lmstudio):
        fake.control(reply=REPLY)


def _fakes(continuing: str, ollama: FakeServer, lmstudio: FakeServer) -> FakeServer:
    """The fake of the primary (the one that cuts)."""
    return lmstudio if continuing == "ollama" else ollama


@pytest.mark.usefixtures("same_reply")
@pytest.mark.parametrize("continuing", ["ollama", "lmstudio"])
@pytest.mark.parametrize("after", [1, 5, 50])
async def test_openai_sse_stream_is_continued(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
    continuing: str, after: int,
) -> None:
    """OpenAI SSE: one id, one finish, the whole reply, both providers named at the end."""
    c = await make_conductor(llm={"provider": PRIMARY_OF[continuing]})
    _fakes(continuing, fake_ollama, fake_lmstudio).control(mode="cut", after_chunks=after,
                                                           times=1)
    resp = await c.chat(stream=True, stream_options={"include_usage": True})
    body = await resp.text()
    events = sse_json(body)
    assert body.rstrip().endswith("data: [DONE]")
    assert not any("error" in e for e in events)
    assert {e["id"] for e in events} == {events[0]["id"]}
    text = "".join(ch["delta"].get("content") or "" for e in events for ch in e["choices"])
    assert text == REPLY
    finishes = [ch["finish_reason"] for e in events for ch in e["choices"] if ch["finish_reason"]]
    assert finishes == ["stop"]
    [final] = [e for e in events if "demi" in e]
    assert final["demi"]["providers"] == [PRIMARY_OF[continuing], continuing]
    assert events[-1]["usage"]["completion_tokens"] == 60 - after
    metrics = (await (await c.client.get("/metrics")).text()).splitlines()
    assert f'demi_stream_continuations_total{{provider="{continuing}"}} 1.0' in metrics


@pytest.mark.usefixtures("same_reply")
@pytest.mark.parametrize("continuing", ["ollama", "lmstudio"])
@pytest.mark.parametrize("after", [1, 5, 50])
async def test_ollama_ndjson_stream_is_continued(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
    continuing: str, after: int,
) -> None:
    """Ollama NDJSON: the whole reply, one done line naming both providers, no error line."""
    c = await make_conductor(llm={"provider": PRIMARY_OF[continuing]})
    _fakes(continuing, fake_ollama, fake_lmstudio).control(mode="cut", after_chunks=after,
                                                           times=1)
    resp = await c.chat("/api/chat", model=OLLAMA_MODEL, stream=True)
    lines = ndjson(await resp.text())
    assert not any("error" in line for line in lines)
    assert "".join(line["message"]["content"] for line in lines) == REPLY
    assert [line["done"] for line in lines].count(True) == 1
    assert lines[-1]["done"] is True
    assert lines[-1]["demi"]["providers"] == [PRIMARY_OF[continuing], continuing]


@pytest.mark.usefixtures("same_reply")
async def test_a_failing_continuation_hands_over_to_the_next(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
) -> None:
    """Both providers cut: with none left the stream ends with an error event, not a cut."""
    c = await make_conductor()
    fake_ollama.control(mode="cut", after_chunks=3, times=1)
    fake_lmstudio.control(mode="cut", after_chunks=2, times=1)
    events = sse_json(await (await c.chat(stream=True)).text())
    text = "".join(ch["delta"].get("content") or "" for e in events
                   for ch in e.get("choices", []))
    assert text == " ".join(f"w{i}" for i in range(5))  # 3 from Ollama, 2 more from LM Studio
    assert "stream_interrupted" in json.dumps(events[-1])


@pytest.mark.usefixtures("same_reply")
async def test_mid_stream_error_keeps_the_old_behaviour(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
) -> None:
    """llm.mid_stream: error ends a cut stream with an error event; nothing is continued."""
    c = await make_conductor(llm={"mid_stream": "error"})
    fake_ollama.control(mode="cut", after_chunks=5, times=1)
    events = sse_json(await (await c.chat(stream=True)).text())
    assert "stream_interrupted" in json.dumps(events[-1])
    assert not [r for r in fake_lmstudio.requests() if r["path"].endswith("/completions")]


@pytest.mark.usefixtures("same_reply")
async def test_whole_replies_come_from_one_provider(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
) -> None:
    """A non-streaming caller gets LM Studio's whole answer, not a continuation of a cut."""
    c = await make_conductor()
    fake_ollama.control(mode="cut", after_chunks=5, times=1)
    resp = await c.chat(messages=HI)
    assert (await resp.json())["choices"][0]["message"]["content"] == REPLY
    [asked] = [r for r in fake_lmstudio.requests() if r["path"].endswith("/completions")]
    assert asked["json"]["messages"][-1]["role"] == "user"  # no prefill: a fresh answer
    status = await (await c.client.get("/status")).json()
    assert status["counters"]["stream_continuations"] == 0


async def test_hedge_is_counted_in_status_and_metrics(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
) -> None:
    """A hung Ollama hedged to LM Studio shows in /status (hedge) and /metrics."""
    c = await make_conductor(llm={"ollama": {"timeout": 30.0}, "hedge": {"min_delay": 0.2}})
    fake_ollama.control(mode="hang")
    resp = await c.chat(stream=True)
    assert resp.headers["X-DEMI-Provider"] == "lmstudio"
    assert sse_json(await resp.text())
    status = await (await c.client.get("/status")).json()
    assert status["hedge"]["hedged"] == 1 and status["hedge"]["hedge_wins"] == 1
    metrics = (await (await c.client.get("/metrics")).text()).splitlines()
    assert "demi_hedged_requests_total 1.0" in metrics
    assert "demi_hedge_wins_total 1.0" in metrics
