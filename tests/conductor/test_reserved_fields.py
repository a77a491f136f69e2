"""Unknown fields named like the LLM layer's own arguments never reach it as such."""

from __future__ import annotations

from src.testing.fakes.launcher import FakeServer
from tests.conductor.helpers import HI, OLLAMA_MODEL, Conductor


async def test_completion_with_a_stray_messages_field_is_served(conductor: Conductor) -> None:
    """/v1/completions with an extra "messages" field: 200, not a 500 (found by the fuzz)."""
    resp = await conductor.client.post("/v1/completions", json={
        "model": "demi", "prompt": "hi", "messages": [{"role": "user", "content": ""}],
        "input": "x"})
    assert resp.status == 200, await resp.text()


async def test_ollama_option_named_model_does_not_pick_the_model(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """options.model / options.workload are not DEMI's per-call model or workload."""
    resp = await conductor.client.post("/api/chat", json={
        "model": "demi", "messages": HI, "stream": False,
        "options": {"model": "evil:latest", "workload": "x"}})
    assert resp.status == 200
    sent = [r["json"] for r in fake_ollama.requests() if r["path"] == "/api/chat"][-1]
    assert sent["model"] == OLLAMA_MODEL
    assert "model" not in sent["options"] and "workload" not in sent["options"]
