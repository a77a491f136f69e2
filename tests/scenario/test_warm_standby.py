"""Warm standby: the provider after the active one is asked to keep its model loaded."""

from __future__ import annotations

import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conftest import HI, LMSTUDIO_REPLY, MakeLLM, wait_until

pytestmark = pytest.mark.timeout(60)
WARM = {"enabled": True, "interval": 0.05, "keep_for": 300}


def _warm_requests(fake: FakeServer, path: str) -> list[dict[str, object]]:
    return [r["json"] for r in fake.requests() if r["path"] == path]


async def test_lmstudio_standby_is_loaded_with_a_ttl(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Ollama active: LM Studio gets one-token requests carrying ttl, and loads its model."""
    fake_lmstudio.control(loaded=[], jit=True)
    async with make_llm(warm_standby=WARM) as llm:
        await wait_until(lambda: len(_warm_requests(fake_lmstudio, "/v1/chat/completions")) >= 2,
                         "two warm requests to LM Studio")
        status = llm.status_report()["warm_standby"]
    [body, *_] = _warm_requests(fake_lmstudio, "/v1/chat/completions")
    assert body["ttl"] == 300 and body["max_tokens"] == 1 and body["stream"] is False
    assert fake_lmstudio.config()["loaded"] == ["qwen2.5-7b-instruct"]
    assert status["standby"] == "lmstudio" and status["warmed"]["lmstudio"] >= 2
    assert not _warm_requests(fake_ollama, "/api/chat")  # the active one is left alone


async def test_ollama_standby_is_preloaded_with_keep_alive(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """LM Studio active: Ollama gets empty chats with keep_alive (its preload, no reply)."""
    async with make_llm(provider="lmstudio", warm_standby=WARM):
        await wait_until(lambda: _warm_requests(fake_ollama, "/api/chat"), "a warm request")
    body = _warm_requests(fake_ollama, "/api/chat")[0]
    assert body["messages"] == [] and body["keep_alive"] == "300s"


async def test_no_standby_when_the_next_provider_is_down(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """With LM Studio unusable there is no standby to warm, and requests still work."""
    fake_lmstudio.kill()
    async with make_llm(warm_standby={**WARM, "interval": 60}) as llm:
        assert llm.standby is not None
        assert llm.standby.standby() is None
        assert await llm.standby.tick() is None
        fake_lmstudio.start()
        standby = llm.standby
        await wait_until(lambda: standby.standby() == "lmstudio", "LM Studio to be usable")
        assert await standby.tick() == "lmstudio"
        fake_ollama.control(mode="status", status=500, times=1)
        assert await llm.chat(HI) == LMSTUDIO_REPLY
