"""A caller's request never counts against a provider (issue 9, part 1).

For each kind of request a provider cannot express, DEMI routes it to one that can (or
answers 400 naming the field), and the skipped provider's circuit, failure count and the
active provider are untouched; so are they for the caller's own bad input.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conductor.helpers import HI, LMSTUDIO_REPLY, Conductor

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nx").decode()
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def untouched(c: Conductor) -> None:
    """Ollama is still the active provider, its circuit closed, no failure counted."""
    status = c.llm.status_report()
    assert c.llm.active_provider == "ollama"
    ollama = status["providers"]["ollama"]
    assert ollama["circuit"] == "closed"
    assert c.llm.registry["ollama"].stats.failures == 0


ROUTED: list[tuple[str, dict[str, Any]]] = [
    ("image by http url", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}),
    ("tool_choice required", {"messages": HI, "tools": [TOOL], "tool_choice": "required"}),
    ("named tool_choice", {"messages": HI, "tools": [TOOL],
                           "tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ("audio part", {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}}]}]}),
]


@pytest.mark.parametrize(("case", "body"), ROUTED, ids=[r[0] for r in ROUTED])
async def test_request_ollama_cannot_express_goes_to_lmstudio(
    conductor: Conductor, case: str, body: dict[str, Any]
) -> None:
    """Ollama has no way to say it: LM Studio answers, and nothing is held against Ollama."""
    for _ in range(3):  # more than the breaker's threshold, had it counted
        resp = await conductor.chat(**body)
        assert resp.status == 200, (case, await resp.text())
        assert resp.headers["X-DEMI-Provider"] == "lmstudio"
        got = await resp.json()
        assert got["choices"][0]["message"]["content"] or got["choices"][0]["message"].get(
            "tool_calls")
    untouched(conductor)


async def test_pinned_to_ollama_a_forced_tool_is_served_degraded(conductor: Conductor) -> None:
    """Pinned to Ollama, tool_choice "required" is served as Ollama's own /v1 would serve
    it (tools offered, no tool_choice), says so in X-DEMI-Degraded, and blames nobody.
    A request nobody can serve at all is a 400: test_client_tripups.py."""
    conductor.llm.force_provider("ollama")
    resp = await conductor.chat(messages=HI, tools=[TOOL], tool_choice="required")
    assert resp.status == 200
    assert resp.headers["X-DEMI-Degraded"] == "tool_choice"
    assert resp.headers["X-DEMI-Provider"] == "ollama"
    conductor.llm.force_provider(None)
    untouched(conductor)


BAD: list[tuple[str, str, dict[str, Any]]] = [
    ("openai: content parts", "/v1/chat/completions", {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                      "text": "b"}]}]}),
    ("openai: bad base64 image", "/v1/chat/completions", {"messages": [
        {"role": "user", "content": [{"type": "image_url",
                                      "image_url": {"url": "data:image/png;base64,@@"}}]}]}),
    ("openai: tool_call arguments not JSON", "/v1/chat/completions", {"messages": [
        *HI, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"}]}),
    ("ollama: image path", "/api/chat", {"stream": False, "messages": [
        {"role": "user", "content": "x", "images": ["/etc/hostname"]}]}),
    ("ollama: part without type", "/api/chat", {"stream": False, "messages": [
        {"role": "user", "content": [{"text": "x"}]}]}),
]


@pytest.mark.parametrize(("case", "path", "body"), BAD, ids=[b[0] for b in BAD])
async def test_callers_own_request_never_blamed(
    conductor: Conductor, case: str, path: str, body: dict[str, Any]
) -> None:
    """Whatever the answer (200 translated, or 400 naming the field), Ollama keeps its state."""
    for _ in range(3):
        resp = await conductor.chat(path, **body)
        assert resp.status in (200, 400), (case, resp.status, await resp.text())
        if resp.status == 200:
            assert resp.headers["X-DEMI-Provider"] == "ollama"
    untouched(conductor)


async def test_text_parts_are_joined_for_ollama(
    conductor: Conductor
) -> None:
    """A text-parts request is joined for Ollama and served by it (the issue's first bug)."""
    resp = await conductor.chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "hi"}]}])
    assert resp.status == 200
    assert resp.headers["X-DEMI-Provider"] == "ollama"
    assert (await resp.json())["choices"][0]["message"]["content"] != LMSTUDIO_REPLY
    untouched(conductor)


async def test_ollama_model_without_tools_sends_the_request_to_lmstudio(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """Ollama's 400 "<model> does not support tools": LM Studio takes the request, and the
    model's limit is held against nobody (it is not the caller's mistake either)."""
    fake_ollama.control(mode="status", status=400,
                        message="llama3.2:1b does not support tools")
    resp = await conductor.chat(messages=HI, tools=[TOOL])
    assert resp.status == 200
    assert resp.headers["X-DEMI-Provider"] == "lmstudio"
    assert (await resp.json())["choices"][0]["finish_reason"] == "tool_calls"
    untouched(conductor)
