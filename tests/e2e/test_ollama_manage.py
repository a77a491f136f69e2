"""Ollama-only calls through DEMI with the real ``ollama`` client: preload and unload,
model pull with streamed progress, copy and delete, and a clear 502 when Ollama is down."""

from __future__ import annotations

import ollama
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.helpers import OLLAMA_MODEL


async def test_preload_and_unload_reach_ollama(
    oll: ollama.AsyncClient, ollama_fake: FakeServer
) -> None:
    """generate without a prompt loads, chat with no messages and keep_alive 0 unloads; the
    calls reach Ollama for its configured model, answered as Ollama answers them."""
    ollama_fake.clear_requests()
    assert (await oll.generate(model="demi")).done_reason == "load"
    assert (await oll.chat(model="demi", messages=[], keep_alive=0)).done_reason == "unload"
    seen = [(r["path"], r["json"]["model"], r["json"].get("keep_alive"))
            for r in ollama_fake.requests() if r["path"].startswith("/api/")]
    assert seen == [("/api/generate", OLLAMA_MODEL, None), ("/api/chat", OLLAMA_MODEL, 0)]


async def test_pull_streams_progress_through_demi(
    oll: ollama.AsyncClient, ollama_fake: FakeServer
) -> None:
    """A pull through DEMI streams Ollama's progress lines; copy and delete are forwarded."""
    progress = [p async for p in await oll.pull("qwen3:0.6b", stream=True)]
    assert progress[0].status == "pulling manifest"
    assert any(p.total and p.completed == p.total for p in progress)
    assert progress[-1].status == "success"
    assert (await oll.pull("qwen3:0.6b")).status == "success"
    await oll.copy("qwen3:0.6b", "mine:latest")
    await oll.delete("mine:latest")
    with pytest.raises(ollama.ResponseError) as info:  # Ollama's own 404 comes back
        await oll.delete("mine:latest")
    assert info.value.status_code == 404


async def test_management_with_ollama_down_is_a_clear_502(
    oll: ollama.AsyncClient, ollama_fake: FakeServer
) -> None:
    """Ollama killed: pull is a 502 saying Ollama is not reachable; preload still answers."""
    ollama_fake.kill()
    with pytest.raises(ollama.ResponseError) as info:
        await oll.pull("qwen3:0.6b")
    assert info.value.status_code == 502
    assert "Ollama" in info.value.error and "not reachable" in info.value.error
    assert (await oll.generate(model="demi")).done_reason == "load"
