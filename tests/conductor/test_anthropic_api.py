"""The Anthropic Messages face, in process, driven by the real ``anthropic`` client against
the fake upstreams (and by raw HTTP where a client would refuse to send the body)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.conductor.anthropic.bodies import MessagesBody
from src.conductor.bodies import validate
from src.conductor.http.errors import ApiError
from src.testing.fakes.launcher import FakeServer
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import (
    LMSTUDIO_MODEL,
    LMSTUDIO_REPLY,
    OLLAMA_MODEL,
    OLLAMA_REPLY,
    Conductor,
    upstream_chats,
)
from tests.waiting import wait_until

MESSAGES = "/v1/messages"
HELLO: list[Any] = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "cache_control": {"type": "ephemeral"},
}


def fake_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """What the fakes report as prompt tokens for these (upstream) messages."""
    return sum(4 + len(m.get("content") or "") // 4 for m in messages)


@pytest.fixture
async def demi(make_conductor: MakeConductor) -> Conductor:
    """A conductor taking bodies of agent size (Claude Code's first request is ~50 KB)."""
    return await make_conductor(conductor={"max_body_bytes": 1 << 20})


def client_for(c: Conductor, **kwargs: Any) -> anthropic.AsyncAnthropic:
    kwargs.setdefault("api_key", "unused")
    return anthropic.AsyncAnthropic(base_url=str(c.client.make_url("")), max_retries=0,
                                    timeout=30, **kwargs)


@pytest.fixture
async def ant(demi: Conductor) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The real ``anthropic`` client on the test's conductor (no retries, so errors show)."""
    async with client_for(demi) as client:
        yield client


def anthropic_error(body: Any) -> dict[str, Any]:
    """The ``error`` object of an Anthropic error body, checking the envelope."""
    assert isinstance(body, dict) and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}
    return body["error"]


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


# -- create ------------------------------------------------------------------------------


async def test_create_returns_an_anthropic_message(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """messages.create: one text block, end_turn, the server's token counts, the real model."""
    raw = await ant.messages.with_raw_response.create(model="demi", max_tokens=100,
                                                      messages=HELLO)
    assert raw.headers["x-demi-provider"] == "ollama"
    assert raw.headers["x-demi-fallback"] == "false"
    msg = await raw.parse()
    assert msg.id.startswith("msg_")
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == OLLAMA_MODEL
    assert [(b.type, getattr(b, "text", None)) for b in msg.content] == [("text", OLLAMA_REPLY)]
    assert msg.stop_reason == "end_turn"
    assert msg.stop_sequence is None
    [sent] = upstream_chats(fake_ollama)
    assert msg.usage.input_tokens == fake_prompt_tokens(sent["json"]["messages"])
    assert msg.usage.output_tokens == 3


async def test_request_fields_reach_the_upstream(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """max_tokens, stop_sequences, temperature, top_p, top_k become Ollama's options; the
    alias is not passed down; system blocks (cache_control ignored) open the conversation."""
    await ant.messages.create(
        model="demi", max_tokens=50, messages=HELLO, stop_sequences=["\n\n", "END"],
        metadata={"user_id": '{"device_id": "d"}'},
        # The client of 2026 no longer spells the sampling fields; older ones and other
        # clients still send them.
        extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 40},
        system=[{"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in English.",
                 "cache_control": {"type": "ephemeral"}}],
    )
    [sent] = upstream_chats(fake_ollama)
    body = sent["json"]
    assert body["model"] == OLLAMA_MODEL
    opts = body["options"]
    assert (opts["num_predict"], opts["stop"], opts["temperature"], opts["top_p"],
            opts["top_k"]) == (50, ["\n\n", "END"], 0.3, 0.9, 40)
    assert "metadata" not in opts and "metadata" not in body
    assert body["messages"] == [
        {"role": "system", "content": "You are terse.\nAnswer in English."},
        {"role": "user", "content": "hi"},
    ]


async def test_max_tokens_reached_is_stop_reason_max_tokens(
    ant: anthropic.AsyncAnthropic,
) -> None:
    """A reply cut by max_tokens says stop_reason max_tokens."""
    msg = await ant.messages.create(model="demi", max_tokens=1, messages=HELLO)
    assert msg.stop_reason == "max_tokens"
    assert [b.text for b in msg.content if b.type == "text"] == ["Hello"]


async def test_text_blocks_and_a_system_turn_inside_messages(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """Text blocks of one turn join into one string; a role: system message (Claude Code sends
    one) is accepted and kept as a system turn where it stands."""
    turns: Any = [
        {"role": "user", "content": [{"type": "text", "text": "<reminder>be kind</reminder>"},
                                     {"type": "text", "text": "Say hello",
                                      "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment\nlinux"}]},
    ]
    msg = await ant.messages.create(model="demi", max_tokens=20, messages=turns,
                                    system="Top system.")
    assert msg.content[0].type == "text" and msg.content[0].text == OLLAMA_REPLY
    [sent] = upstream_chats(fake_ollama)
    assert sent["json"]["messages"] == [
        {"role": "system", "content": "Top system."},
        {"role": "user", "content": "<reminder>be kind</reminder>\nSay hello"},
        {"role": "system", "content": "# Environment\nlinux"},
    ]


async def test_claude_model_names_route_through_the_chain(
    ant: anthropic.AsyncAnthropic,
) -> None:
    """Claude Code names Anthropic's models: any claude-* name is served like the alias."""
    msg = await ant.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=20,
                                    messages=HELLO)
    assert msg.model == OLLAMA_MODEL
    assert msg.content[0].type == "text" and msg.content[0].text == OLLAMA_REPLY


async def test_fallback_is_named_in_headers_and_model(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """Ollama failing: LM Studio answers, and the reply says so."""
    fake_ollama.control(mode="status", status=500)
    raw = await ant.messages.with_raw_response.create(model="demi", max_tokens=20,
                                                      messages=HELLO)
    assert raw.headers["x-demi-provider"] == "lmstudio"
    assert raw.headers["x-demi-fallback"] == "true"
    msg = await raw.parse()
    assert msg.model == LMSTUDIO_MODEL
    assert msg.content[0].type == "text" and msg.content[0].text == LMSTUDIO_REPLY


# -- streaming ---------------------------------------------------------------------------


async def test_stream_follows_the_event_sequence(demi: Conductor) -> None:
    """message_start, ping, a text block of text_deltas, message_delta with the stop reason
    and usage, message_stop; one message id; the real model."""
    resp = await demi.client.post(MESSAGES, json={"model": "demi", "max_tokens": 64,
                                                  "messages": HELLO, "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-DEMI-Provider"] == "ollama"
    events = sse(await resp.text())
    names = [name for name, _ in events]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == OLLAMA_MODEL
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[2][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == OLLAMA_REPLY
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == 3


async def test_client_stream_helper_builds_the_message(ant: anthropic.AsyncAnthropic) -> None:
    """The client's messages.stream() yields the text and accumulates the final message."""
    async with ant.messages.stream(model="demi", max_tokens=64, messages=HELLO) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == OLLAMA_REPLY
    assert final.content[0].type == "text" and final.content[0].text == OLLAMA_REPLY
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens > 0


async def test_stream_broken_with_nothing_left_ends_with_an_error_event(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """mid_stream: error: a stream broken after text ends with an error event (no
    message_stop), which the client raises."""
    c = await make_conductor(llm={"mid_stream": "error"})
    fake_ollama.control(mode="cut", after_chunks=2)
    resp = await c.client.post(MESSAGES, json={"model": "demi", "max_tokens": 64,
                                               "messages": HELLO, "stream": True})
    events = sse(await resp.text())
    assert [n for n, _ in events][-1] == "error"
    assert "message_stop" not in [n for n, _ in events]
    err = anthropic_error(events[-1][1])
    assert err["type"] == "api_error" and "broke after" in err["message"]
    await wait_until(lambda: c.state.in_flight == 0, "the stream handler to finish")
    for fake in (fake_ollama, fake_lmstudio):  # Ollama's circuit is open: LM Studio is next
        fake.control(mode="cut", after_chunks=2)
    async with client_for(c) as client:
        with pytest.raises(anthropic.APIStatusError, match="broke after"):
            async with client.messages.stream(model="demi", max_tokens=64,
                                              messages=HELLO) as stream:
                async for _ in stream:
                    pass


async def test_a_stream_broken_midway_is_continued(
    demi: Conductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """A stream cut after text is finished by the next provider in the same message; the
    message_delta names both providers."""
    reply = " ".join(f"w{i}" for i in range(20))
    for fake in (fake_ollama, fake_lmstudio):
        fake.control(reply=reply)
    fake_ollama.control(mode="cut", after_chunks=5, times=1)
    resp = await demi.client.post(MESSAGES, json={"model": "demi", "max_tokens": 64,
                                                  "messages": HELLO, "stream": True})
    events = sse(await resp.text())
    assert [n for n, _ in events][-1] == "message_stop"
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == reply
    [delta] = [d for n, d in events if n == "message_delta"]
    assert delta["demi"]["providers"] == ["ollama", "lmstudio"]


async def test_stream_that_cannot_start_is_an_http_error(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Every provider down before the first token: a 503 overloaded_error, not an empty
    stream (the client raises it from the stream call)."""
    fake_ollama.control(mode="status", status=500)
    fake_lmstudio.control(mode="status", status=500)
    with pytest.raises(anthropic.InternalServerError) as caught:
        async with ant.messages.stream(model="demi", max_tokens=64, messages=HELLO):
            pass
    assert caught.value.status_code == 503
    err = anthropic_error(caught.value.body)
    assert err["type"] == "overloaded_error"
    assert err["message"].startswith("Both Ollama and LMStudio providers failed")


# -- tools -------------------------------------------------------------------------------


async def test_tools_are_offered_and_a_call_comes_back_as_tool_use(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """Anthropic tools (input_schema with $schema and additionalProperties, cache_control)
    reach Ollama as function tools; the call comes back as a tool_use block whose input is
    an object, with stop_reason tool_use."""
    msg = await ant.messages.create(model="demi", max_tokens=100, messages=HELLO,
                                    tools=[WEATHER], tool_choice={"type": "auto"})
    assert msg.stop_reason == "tool_use"
    [block] = msg.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    assert block.id
    [sent] = upstream_chats(fake_ollama)
    [tool] = sent["json"]["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["description"] == "The weather in a city"
    assert tool["function"]["parameters"]["required"] == ["city"]


async def test_tool_use_streams_as_input_json_delta(demi: Conductor) -> None:
    """Streamed, a tool call is a tool_use block (input {}) with one input_json_delta."""
    resp = await demi.client.post(MESSAGES, json={
        "model": "demi", "max_tokens": 100, "messages": HELLO, "tools": [WEATHER],
        "stream": True})
    events = sse(await resp.text())
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [s["type"] for s in starts] == ["tool_use"]
    assert starts[0]["name"] == "get_weather" and starts[0]["input"] == {}
    [delta] = [d for n, d in events if n == "content_block_delta"]
    assert delta["delta"]["type"] == "input_json_delta"
    assert json.loads(delta["delta"]["partial_json"]) == {"city": "Paris"}
    [final] = [d for n, d in events if n == "message_delta"]
    assert final["delta"]["stop_reason"] == "tool_use"


async def test_client_stream_accumulates_a_tool_call(ant: anthropic.AsyncAnthropic) -> None:
    """The client's stream helper rebuilds the tool_use input from the deltas."""
    async with ant.messages.stream(model="demi", max_tokens=100, messages=HELLO,
                                   tools=[WEATHER]) as stream:
        final = await stream.get_final_message()
    [block] = final.content
    assert block.type == "tool_use" and block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


async def test_tool_results_round_trip(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """tool_use blocks go back as the assistant's calls, tool_result blocks (string or block
    content, is_error) as tool messages before the user's text; the model then answers."""
    turns: Any = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
             "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 25 C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "Rome is unreachable"}]},
            {"type": "text", "text": "Summarise, please."},
        ]},
    ]
    for fake, reply in ((fake_ollama, OLLAMA_REPLY), (fake_lmstudio, LMSTUDIO_REPLY)):
        if fake is fake_lmstudio:
            fake_ollama.control(mode="status", status=500)
        msg = await ant.messages.create(model="demi", max_tokens=100, messages=turns,
                                        tools=[WEATHER])
        assert msg.stop_reason == "end_turn"
        assert [(b.type, getattr(b, "text", None)) for b in msg.content] == [("text", reply)]
    [ollama_sent] = upstream_chats(fake_ollama)[-1:]
    sent = ollama_sent["json"]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Checking."
    assert [c["function"] for c in sent[1]["tool_calls"]] == [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": {"city": "Rome"}},
    ]
    assert sent[2:] == [
        {"role": "tool", "content": "Sunny, 25 C", "tool_name": "get_weather"},
        {"role": "tool", "content": "Error: Rome is unreachable", "tool_name": "get_weather"},
        {"role": "user", "content": "Summarise, please."},
    ]
    [lm_sent] = upstream_chats(fake_lmstudio)
    lm = lm_sent["json"]["messages"]
    assert [c["id"] for c in lm[1]["tool_calls"]] == ["toolu_1", "toolu_2"]
    assert json.loads(lm[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert [(m["role"], m.get("tool_call_id")) for m in lm[2:]] == [
        ("tool", "toolu_1"), ("tool", "toolu_2"), ("user", None)]


async def test_tool_choice_is_translated(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """tool_choice any / tool / none: Ollama cannot force a tool, so LM Studio gets
    required / the named function; none offers no tool at all."""
    await ant.messages.create(model="demi", max_tokens=20, messages=HELLO, tools=[WEATHER],
                              tool_choice={"type": "any", "disable_parallel_tool_use": True})
    await ant.messages.create(model="demi", max_tokens=20, messages=HELLO, tools=[WEATHER],
                              tool_choice={"type": "tool", "name": "get_weather"})
    msg = await ant.messages.create(model="demi", max_tokens=20, messages=HELLO,
                                    tools=[WEATHER], tool_choice={"type": "none"})
    assert msg.content[0].type == "text" and msg.content[0].text == OLLAMA_REPLY
    lm = [r["json"] for r in upstream_chats(fake_lmstudio)]
    assert [(b["tool_choice"], b.get("parallel_tool_calls")) for b in lm] == [
        ("required", False),
        ({"type": "function", "function": {"name": "get_weather"}}, None),
    ]
    [none_sent] = upstream_chats(fake_ollama)[-1:]
    assert not none_sent["json"].get("tools")


async def test_deferred_tools_wait_for_a_tool_reference(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """A defer_loading tool is not offered until a tool_reference in a tool result names it."""
    deferred = {**WEATHER, "name": "later", "defer_loading": True}
    await ant.messages.create(model="demi", max_tokens=20, messages=HELLO,
                              tools=[WEATHER, deferred])
    turns: Any = [
        *HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search",
                                           "input": {"query": "later"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "tool_reference", "tool_name": "later"}]}]},
    ]
    await ant.messages.create(model="demi", max_tokens=20, messages=turns,
                              tools=[WEATHER, deferred])
    first, second = upstream_chats(fake_ollama)
    assert [t["function"]["name"] for t in first["json"]["tools"]] == ["get_weather"]
    assert [t["function"]["name"] for t in second["json"]["tools"]] == ["get_weather", "later"]
    assert second["json"]["messages"][-1] == {"role": "tool", "tool_name": "search",
                                              "content": "Tool later is now available."}


# -- images, structured output, thinking ------------------------------------------------


async def test_images_reach_each_kind_of_server(
    ant: anthropic.AsyncAnthropic, demi: Conductor, fake_ollama: FakeServer,
    fake_lmstudio: FakeServer,
) -> None:
    """A base64 image block becomes Ollama's images; an image by URL, which Ollama cannot
    take, goes to LM Studio as an image_url part (nobody blamed)."""
    msg = await ant.messages.create(model="demi", max_tokens=20, messages=[{
        "role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "text", "text": "What is this?"}]}])
    assert msg.content[0].type == "text" and msg.content[0].text == OLLAMA_REPLY
    [sent] = upstream_chats(fake_ollama)
    assert sent["json"]["messages"] == [
        {"role": "user", "content": "What is this?", "images": [PNG]}]
    raw = await ant.messages.with_raw_response.create(model="demi", max_tokens=20, messages=[{
        "role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "text", "text": "And this?"}]}])
    assert raw.headers["x-demi-provider"] == "lmstudio"
    [lm] = upstream_chats(fake_lmstudio)
    assert lm["json"]["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "And this?"}]
    assert demi.llm.provider_status("ollama")["circuit"] == "closed"


async def test_images_inside_a_tool_result_follow_in_the_user_turn(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """A tool result with an image (Claude Code's Read of a picture): the text is the tool
    message, the image rides in the user turn after it."""
    turns: Any = [
        *HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                           "input": {"file_path": "/a.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "The picture:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}}]}]},
    ]
    await ant.messages.create(model="demi", max_tokens=20, messages=turns)
    [sent] = upstream_chats(fake_ollama)
    tool, user = sent["json"]["messages"][-2:]
    assert tool == {"role": "tool", "content": "The picture:", "tool_name": "Read"}
    assert (user["role"], user.get("content"), user["images"]) == ("user", None, [PNG])


async def test_output_config_format_is_structured_output(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """output_config.format json_schema becomes Ollama's format schema; the reply is JSON."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}
    msg = await ant.messages.create(
        model="demi", max_tokens=50, messages=HELLO,
        extra_body={"output_config": {"effort": "low",
                                      "format": {"type": "json_schema", "schema": schema}}})
    assert msg.content[0].type == "text"
    assert json.loads(msg.content[0].text) == {"city": "Paris"}
    [sent] = upstream_chats(fake_ollama)
    assert sent["json"]["format"] == schema


@pytest.mark.parametrize(("thinking", "think"), [
    ({"type": "enabled", "budget_tokens": 2048}, True),
    ({"type": "disabled"}, False),
    ({"type": "adaptive", "display": "omitted"}, None),
])
async def test_thinking_maps_to_ollamas_think(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
    thinking: dict[str, Any], think: bool | None,
) -> None:
    """thinking enabled / disabled is Ollama's think true / false; adaptive leaves the
    model's default; an OpenAI-compatible server never gets think."""
    await ant.messages.create(model="demi", max_tokens=20, messages=HELLO,
                              extra_body={"thinking": thinking})
    [sent] = upstream_chats(fake_ollama)
    assert sent["json"].get("think") == think
    fake_ollama.control(mode="status", status=500)
    await ant.messages.create(model="demi", max_tokens=20, messages=HELLO,
                              extra_body={"thinking": thinking})
    [lm] = upstream_chats(fake_lmstudio)
    assert "think" not in lm["json"]


async def test_thinking_blocks_in_history_become_ollamas_thinking(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """An assistant turn's thinking block goes back as Ollama's message thinking; a
    redacted_thinking block is dropped."""
    turns: Any = [*HELLO, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "The user greets.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Hello!"}]}, {"role": "user", "content": "Again"}]
    await ant.messages.create(model="demi", max_tokens=20, messages=turns)
    [sent] = upstream_chats(fake_ollama)
    assert sent["json"]["messages"][1] == {"role": "assistant", "content": "Hello!",
                                           "thinking": "The user greets."}


# -- what Claude Code sends --------------------------------------------------------------


def claude_code_like_body() -> dict[str, Any]:
    """A request of the shape Claude Code 2.1 sends (its prompt texts replaced)."""
    schema = "https://json-schema.org/draft/2020-12/schema"
    tools = [{"name": f"Tool{i}", "description": f"Tool number {i}", "input_schema": {
        "$schema": schema, "type": "object", "additionalProperties": False,
        "properties": {"command": {"type": "string", "description": "what to run"},
                       "timeout": {"type": "number"}},
        "required": ["command"]}} for i in range(24)]
    tools.append({"name": "Deferred", "description": "placeholder", "defer_loading": True,
                  "input_schema": {"type": "object", "properties": {}}})
    return {
        "model": "claude-opus-4-6", "max_tokens": 32000, "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0;"},
            {"type": "text", "text": "You are an agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral",
                                                                        "ttl": "1h"}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>r"
                                          "</system-reminder>"},
                                         {"type": "text", "text": "Say hello",
                                          "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
        ],
        "tools": tools,
        "metadata": {"user_id": json.dumps({"device_id": "abc", "session_id": "s"})},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "some_future_beta_field": {"anything": [1, 2, 3]},
    }


CLAUDE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
                      "context-management-2025-06-27,effort-2025-11-24",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "Authorization": "Bearer some-token",
}


async def test_a_claude_code_request_is_served(
    demi: Conductor, fake_ollama: FakeServer
) -> None:
    """Claude Code's request (?beta=true, beta headers, three system blocks, 24 tools with
    $schema, a system turn, adaptive thinking, output_config, context_management, metadata
    as a JSON string, an unknown beta field) is a 200 stream; the ignored fields reach no
    upstream, the tools do (the deferred one not yet)."""
    resp = await demi.client.post(MESSAGES + "?beta=true", json=claude_code_like_body(),
                                  headers=CLAUDE_HEADERS)
    assert resp.status == 200, await resp.text()
    events = sse(await resp.text())
    assert [n for n, _ in events][-1] == "message_stop"
    [call] = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert (call["type"], call["name"]) == ("tool_use", "Tool0")
    [sent] = upstream_chats(fake_ollama)
    upstream = sent["json"]
    assert [t["function"]["name"] for t in upstream["tools"]] == [f"Tool{i}" for i in range(24)]
    assert upstream["tools"][0]["function"]["parameters"]["required"] == ["command"]
    for key in ("metadata", "output_config", "context_management", "some_future_beta_field",
                "thinking", "think"):
        assert key not in upstream and key not in upstream["options"]
    assert upstream["options"]["num_predict"] == 32000
    assert [m["role"] for m in upstream["messages"]] == ["system", "user", "system"]


async def test_a_failed_stream_retried_without_streaming_is_answered(
    demi: Conductor, fake_ollama: FakeServer
) -> None:
    """Claude Code retries a failed stream without streaming: the same body, stream false,
    gets a whole message."""
    body = {**claude_code_like_body(), "stream": False, "tools": []}
    resp = await demi.client.post(MESSAGES + "?beta=true", json=body, headers=CLAUDE_HEADERS)
    assert resp.status == 200
    msg = await resp.json()
    assert msg["type"] == "message"
    assert msg["content"] == [{"type": "text", "text": OLLAMA_REPLY}]


# -- count_tokens ------------------------------------------------------------------------


async def test_count_tokens_is_demis_calibrated_estimate(
    ant: anthropic.AsyncAnthropic, demi: Conductor
) -> None:
    """count_tokens answers the estimate DEMI fits conversations with; tools count; once
    the server reported a prompt's size, the estimate for that prompt is the server's."""
    turns: Any = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]
    before = await ant.messages.count_tokens(model="demi", messages=turns, system="Be brief.")
    with_tools = await ant.messages.count_tokens(model="demi", messages=turns,
                                                 system="Be brief.", tools=[WEATHER])
    assert before.input_tokens == demi.llm.estimate_tokens(
        [{"role": "system", "content": "Be brief."}, *turns])
    assert with_tools.input_tokens > before.input_tokens
    msg = await ant.messages.create(model="demi", max_tokens=20, messages=turns,
                                    system="Be brief.")
    after = await ant.messages.count_tokens(model="demi", messages=turns, system="Be brief.")
    assert after.input_tokens == msg.usage.input_tokens
    assert after.input_tokens != before.input_tokens


async def test_count_tokens_refuses_bad_bodies_in_anthropic_shape(demi: Conductor) -> None:
    """count_tokens checks the model and the messages like /v1/messages."""
    resp = await demi.client.post(MESSAGES + "/count_tokens", json={"model": "demi"})
    assert resp.status == 400
    assert anthropic_error(await resp.json())["message"] == (
        "messages is required: send at least one {role, content} message")
    resp = await demi.client.post(MESSAGES + "/count_tokens",
                                  json={"model": "gpt-4o", "messages": HELLO})
    assert resp.status == 404
    assert anthropic_error(await resp.json())["type"] == "not_found_error"


# -- errors ------------------------------------------------------------------------------


async def test_missing_max_tokens_is_a_400_in_anthropic_shape(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer
) -> None:
    """No max_tokens: 400 {"type": "error", "error": {"type": "invalid_request_error"}},
    raised by the client as BadRequestError; no provider is asked."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ant.post(MESSAGES, body={"model": "demi", "messages": HELLO}, cast_to=object)
    assert caught.value.status_code == 400
    err = anthropic_error(caught.value.body)
    assert err == {"type": "invalid_request_error", "message": "max_tokens is required"}
    assert upstream_chats(fake_ollama) == []


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("max_tokens zero", {"max_tokens": 0}, "max_tokens must be a positive integer"),
    ("max_tokens null", {"max_tokens": None}, "max_tokens must be a positive integer, not null"),
    ("no messages", {"messages": []}, "messages must not be empty"),
    ("bad role", {"messages": [{"role": "robot", "content": "x"}]},
     'messages[0].role must be "user" or "assistant"'),
    ("content a number", {"messages": [{"role": "user", "content": 5}]},
     "messages[0].content must be a string or an array of content blocks"),
    ("no content", {"messages": [{"role": "user"}]}, "messages[0].content is required"),
    ("unknown block", {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0].type 'audio' is not supported"),
    ("block without type", {"messages": [{"role": "user", "content": ["hi"]}]},
     "messages[0].content[0] must be a content block object"),
    ("text not a string", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": 1}]}]}, "messages[0].content[0].text must be a string"),
    ("pdf document", {"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBE"}}]}]}, "local models read no PDF"),
    ("image by file id", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "f1"}}]}]},
     "source.type 'file' is not supported"),
    ("bad base64", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "***"}}]}]}, "not valid base64"),
    ("tool_use input a string", {"messages": [*HELLO, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]},
     "messages[1].content[0].input must be an object"),
    ("server tool", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0].type 'web_search_20250305' is one of Anthropic's server tools"),
    ("tool without schema", {"tools": [{"name": "f"}]}, "tools[0].input_schema must be"),
    ("tools not objects", {"tools": ["f"]}, "tools must be an array of objects"),
    ("bad tool_choice", {"tools": [WEATHER], "tool_choice": {"type": "maybe"}},
     "tool_choice.type must be"),
    ("stop_sequences a string", {"stop_sequences": "END"},
     "stop_sequences must be an array of strings"),
    ("temperature text", {"temperature": "hot"}, "temperature must be a number"),
    ("temperature out of range", {"temperature": 5}, "out of range"),
    ("top_k negative", {"top_k": -1}, "top_k must be a non-negative integer"),
    ("system a number", {"system": 3}, "system must be a string or an array of text blocks"),
    ("system image", {"system": [{"type": "image"}]}, "system[0] must be a text block"),
    ("thinking a string", {"thinking": "on"}, "thinking must be an object"),
    ("bad output format", {"output_config": {"format": {"type": "xml"}}},
     "output_config.format must be"),
    ("stream text", {"stream": "yes"}, "stream must be true or false"),
]


@pytest.mark.parametrize(("case", "fields", "fragment"), BAD_BODIES,
                         ids=[c[0] for c in BAD_BODIES])
async def test_bad_input_is_a_400_in_anthropic_shape(
    demi: Conductor, fake_ollama: FakeServer, case: str, fields: dict[str, Any], fragment: str
) -> None:
    """Each malformed field is a 400 invalid_request_error naming it; no provider is asked."""
    body = {"model": "demi", "max_tokens": 10, "messages": HELLO, **fields}
    resp = await demi.client.post(MESSAGES, json=body)
    assert resp.status == 400, case
    err = anthropic_error(await resp.json())
    assert err["type"] == "invalid_request_error"
    assert fragment in err["message"], err["message"]
    assert upstream_chats(fake_ollama) == []


async def test_unknown_model_is_not_found_error(ant: anthropic.AsyncAnthropic) -> None:
    """A model DEMI does not serve is a 404 not_found_error listing the names it does."""
    with pytest.raises(anthropic.NotFoundError) as caught:
        await ant.messages.create(model="gpt-4o", max_tokens=10, messages=HELLO)
    err = anthropic_error(caught.value.body)
    assert err["type"] == "not_found_error"
    assert "gpt-4o" in err["message"] and "demi" in err["message"]


async def test_other_paths_under_messages_use_anthropic_shape(demi: Conductor) -> None:
    """An unknown path below /v1/messages, a wrong method, an unparseable or oversized body:
    Anthropic's error object; /v1/chat/completions keeps OpenAI's."""
    resp = await demi.client.post(MESSAGES + "/batches", json={})
    assert resp.status == 404
    assert anthropic_error(await resp.json())["type"] == "not_found_error"
    resp = await demi.client.get(MESSAGES)
    assert resp.status == 405
    assert anthropic_error(await resp.json())["type"] == "invalid_request_error"
    resp = await demi.client.post(MESSAGES, data=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "not valid JSON" in anthropic_error(await resp.json())["message"]
    resp = await demi.client.post(MESSAGES, data=io.BytesIO(b"x" * (2 << 20)))
    assert resp.status == 413
    assert anthropic_error(await resp.json())["type"] == "request_too_large"
    resp = await demi.client.post("/v1/chat/completions", json={})
    assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}


async def test_every_provider_failing_is_overloaded_error(
    ant: anthropic.AsyncAnthropic, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Every provider failing: a 503 overloaded_error carrying the guide's message."""
    fake_ollama.control(mode="status", status=500)
    fake_lmstudio.control(mode="status", status=500)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await ant.messages.create(model="demi", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 503
    err = anthropic_error(caught.value.body)
    assert err["type"] == "overloaded_error"
    assert err["message"].startswith("Both Ollama and LMStudio providers failed")


# -- auth --------------------------------------------------------------------------------


async def test_the_api_key_is_taken_as_x_api_key_or_bearer(
    make_conductor: MakeConductor,
) -> None:
    """With conductor.api_key set, the client's api_key (x-api-key) and auth_token (Bearer,
    what Claude Code sends) both pass; a wrong key is a 401 authentication_error."""
    c = await make_conductor(conductor={"api_key": "s3cret"})
    async with client_for(c, api_key="s3cret") as by_header:
        msg = await by_header.messages.create(model="demi", max_tokens=10, messages=HELLO)
        assert msg.content[0].type == "text" and msg.content[0].text == OLLAMA_REPLY
    async with client_for(c, api_key=None, auth_token="s3cret") as by_bearer:
        msg = await by_bearer.messages.create(model="demi", max_tokens=10, messages=HELLO)
        assert msg.content[0].type == "text" and msg.content[0].text == OLLAMA_REPLY
        count = await by_bearer.messages.count_tokens(model="demi", messages=HELLO)
        assert count.input_tokens > 0
    async with client_for(c, api_key="wrong") as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await wrong.messages.create(model="demi", max_tokens=10, messages=HELLO)
    assert anthropic_error(caught.value.body) == {"type": "authentication_error",
                                                  "message": "invalid API key"}


# -- each kind of provider ---------------------------------------------------------------


def kind_config(kind: str, ollama_url: str, lmstudio_url: str) -> dict[str, Any]:
    """A chain of one provider of ``kind`` over the fakes."""
    entries = {
        "kind-ollama": {"name": "kind-ollama", "kind": "ollama", "base_url": ollama_url,
                        "model": OLLAMA_MODEL},
        "kind-openai": {"name": "kind-openai", "kind": "openai", "base_url": lmstudio_url,
                        "model": LMSTUDIO_MODEL},
    }
    llm: dict[str, Any] = {"order": [kind]}
    if kind in entries:
        llm["providers"] = [entries[kind]]
    return llm


@pytest.mark.parametrize(("kind", "reply"), [
    ("ollama", OLLAMA_REPLY), ("lmstudio", LMSTUDIO_REPLY),
    ("kind-ollama", OLLAMA_REPLY), ("kind-openai", LMSTUDIO_REPLY),
])
async def test_every_kind_of_provider_serves_the_face(
    make_conductor: MakeConductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer,
    kind: str, reply: str,
) -> None:
    """Through the guide's Ollama and LM Studio and through llm.providers entries of kind
    ollama and openai: a message, a stream, a tool call and its result."""
    c = await make_conductor(llm=kind_config(kind, fake_ollama.url, fake_lmstudio.url))
    async with client_for(c) as client:
        raw = await client.messages.with_raw_response.create(model="demi", max_tokens=50,
                                                             messages=HELLO)
        assert raw.headers["x-demi-provider"] == kind
        msg = await raw.parse()
        assert msg.content[0].type == "text" and msg.content[0].text == reply
        async with client.messages.stream(model="demi", max_tokens=50,
                                          messages=HELLO) as stream:
            assert "".join([t async for t in stream.text_stream]) == reply
        called = await client.messages.create(model="demi", max_tokens=50, messages=HELLO,
                                              tools=[WEATHER])
        [use] = called.content
        assert use.type == "tool_use" and use.input == {"city": "Paris"}
        answered = await client.messages.create(
            model="demi", max_tokens=50, tools=[WEATHER], messages=[
                *HELLO, {"role": "assistant", "content": [use.model_dump()]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                              "content": "Sunny"}]}])
        assert answered.content[0].type == "text" and answered.content[0].text == reply


async def test_models_are_listed_in_anthropics_shape_for_its_client(
    ant: anthropic.AsyncAnthropic, demi: Conductor
) -> None:
    """models.list() and models.retrieve() (the client sends anthropic-version) get
    Anthropic's shape; an OpenAI client's GET /v1/models keeps OpenAI's."""
    page = await ant.models.list()
    assert [m.id for m in page.data] == ["demi", OLLAMA_MODEL]
    assert all(m.type == "model" and m.display_name == m.id for m in page.data)
    assert page.has_more is False
    one = await ant.models.retrieve("demi")
    assert (one.id, one.type) == ("demi", "model")
    assert one.created_at.year >= 2024
    plain = await (await demi.client.get("/v1/models")).json()
    assert plain["object"] == "list" and plain["data"][0]["object"] == "model"


# -- any body: a translation or the caller's 4xx, never a DEMI bug ---------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
TEXTS = st.text(max_size=5)
SOURCE = st.fixed_dictionaries({"type": st.sampled_from(["base64", "url", "text", "file"])},
                               optional={"media_type": TEXTS,
                                         "data": st.sampled_from([PNG, "***", ""]),
                                         "url": TEXTS})
LEAF_BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_reference", "audio"])},
    optional={"text": TEXTS, "source": SOURCE, "tool_name": TEXTS})
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_use", "tool_result",
                              "thinking", "redacted_thinking", "server_tool_use"])},
    optional={"text": TEXTS, "source": SOURCE, "id": TEXTS, "name": TEXTS,
              "input": st.dictionaries(TEXTS, JSON, max_size=2) | JSON,
              "tool_use_id": TEXTS, "is_error": st.booleans(),
              "content": TEXTS | st.lists(LEAF_BLOCK, max_size=3) | JSON, "thinking": TEXTS})
TURN = st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system"]),
    "content": TEXTS | st.lists(BLOCK, max_size=3),
})
TOOL = st.fixed_dictionaries(
    {"name": TEXTS | JSON},
    optional={"input_schema": st.just({"type": "object"}) | JSON, "type": st.none() | JSON,
              "defer_loading": st.booleans(), "description": TEXTS | JSON})
FIELDS = st.fixed_dictionaries({}, optional={
    "system": TEXTS | st.lists(LEAF_BLOCK, max_size=2) | JSON,
    "tools": st.lists(TOOL, max_size=2) | JSON,
    "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(
        ["auto", "any", "tool", "none", "x"])}, optional={"name": TEXTS | JSON}) | JSON,
    "thinking": st.fixed_dictionaries({"type": st.sampled_from(
        ["enabled", "disabled", "adaptive"]) | JSON}) | JSON,
    "output_config": st.fixed_dictionaries({}, optional={"format": JSON}) | JSON,
    "stop_sequences": st.lists(TEXTS, max_size=2) | JSON,
    "temperature": JSON, "top_k": JSON, "stream": JSON, "metadata": JSON,
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TURN, min_size=1, max_size=3), FIELDS)
def test_any_body_translates_or_is_the_callers_4xx(
    turns: list[Any], fields: dict[str, Any]
) -> None:
    """Whatever JSON arrives, the body validates and translates, or raises a 4xx ApiError."""
    data = {"model": "demi", "max_tokens": 5, "messages": turns, **fields}
    try:
        messages, options = validate(data, MessagesBody).chat()
    except ApiError as exc:
        assert 400 <= exc.status < 500
        return
    assert all(m["role"] in ("system", "user", "assistant", "tool") for m in messages)
    assert isinstance(options["max_tokens"], int)
