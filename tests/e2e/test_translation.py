"""Tools, structured output, images and content parts through DEMI, with the real clients.

Each test runs on both upstreams: ``upstream`` pins the provider over the admin API, so
the same request reaches the fake Ollama (native API) or the fake LM Studio (OpenAI API).
What the fake received is read back from its request log, to check the translation.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import ollama
import openai
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.helpers import ConductorProcess

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image").decode()
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(params=["ollama", "lmstudio"])
def upstream(request: pytest.FixtureRequest, demi: ConductorProcess,
             ollama_fake: FakeServer, lmstudio_fake: FakeServer) -> FakeServer:
    """The provider every request goes to in this test (pinned), with a clean request log."""
    demi.post_json("/admin/provider", {"provider": request.param})
    fake = ollama_fake if request.param == "ollama" else lmstudio_fake
    fake.clear_requests()
    return fake




def sent(fake: FakeServer) -> dict[str, Any]:
    """The body of the last chat request the fake received."""
    chats = [r for r in fake.requests() if r["path"] in ("/api/chat", "/v1/chat/completions")]
    assert chats, "the upstream got no chat request"
    body = chats[-1]["json"]
    assert isinstance(body, dict)
    return body


# -- tools ---------------------------------------------------------------------------------


async def test_openai_tool_call_round_trip(
    oai: openai.AsyncOpenAI, upstream: FakeServer
) -> None:
    """openai client: a tool call comes back with finish_reason tool_calls, and the tool
    result sent back gets a text answer; the upstream saw its own spelling of both."""
    first = await oai.chat.completions.create(model="demi", messages=ASK, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    history = [*ASK, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = await oai.chat.completions.create(model="demi", messages=history,
                                               tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    body = sent(upstream)
    assert body["tools"] == [WEATHER]
    tool_msg = body["messages"][-1]
    assistant = body["messages"][-2]["tool_calls"][0]["function"]
    if upstream.kind == "ollama":
        assert assistant["arguments"] == {"city": "Paris"}
        assert tool_msg["tool_name"] == "get_weather"
    else:
        assert json.loads(assistant["arguments"]) == {"city": "Paris"}
        assert tool_msg["tool_call_id"] == call.id


async def test_openai_tool_call_streamed(
    oai: openai.AsyncOpenAI, upstream: FakeServer
) -> None:
    """openai client, streaming: delta.tool_calls assemble into the whole call."""
    stream = await oai.chat.completions.create(model="demi", messages=ASK, tools=[WEATHER],
                                               stream=True)
    names, args, reasons = [], [], []
    async for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or ():
                if piece.function and piece.function.name:
                    names.append(piece.function.name)
                if piece.function and piece.function.arguments:
                    args.append(piece.function.arguments)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert names == ["get_weather"]
    assert json.loads("".join(args)) == {"city": "Paris"}
    assert reasons == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_tool_call_round_trip(
    oll: ollama.AsyncClient, upstream: FakeServer, stream: bool
) -> None:
    """ollama client: message.tool_calls with object arguments, streamed or not, and a
    tool-role reply (tool_name) answered with text."""
    calls: list[Any] = []
    if stream:
        async for part in await oll.chat(model="demi", messages=ASK, tools=[WEATHER],
                                         stream=True):
            calls.extend(part.message.tool_calls or ())
    else:
        reply = await oll.chat(model="demi", messages=ASK, tools=[WEATHER])
        calls = list(reply.message.tool_calls or ())
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    history = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    answer = await oll.chat(model="demi", messages=history, tools=[WEATHER])
    assert answer.message.content and not answer.message.tool_calls
    body = sent(upstream)
    if upstream.kind == "lmstudio":  # the OpenAI spelling: string arguments, matching ids
        call = body["messages"][1]["tool_calls"][0]
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        assert body["messages"][2]["tool_call_id"] == call["id"]


# -- structured output ---------------------------------------------------------------------


async def test_openai_json_mode_and_schema(
    oai: openai.AsyncOpenAI, upstream: FakeServer
) -> None:
    """response_format json_object and json_schema give JSON; LM Studio gets json_schema
    (it refuses json_object), Ollama gets format."""
    got = await oai.chat.completions.create(model="demi", messages=ASK,
                                            response_format={"type": "json_object"})
    assert isinstance(json.loads(got.choices[0].message.content or ""), dict)
    body = sent(upstream)
    if upstream.kind == "ollama":
        assert body["format"] == "json"
    else:
        assert body["response_format"]["type"] == "json_schema"
    got = await oai.chat.completions.create(
        model="demi", messages=ASK,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": SCHEMA}})
    assert json.loads(got.choices[0].message.content or "") == {"name": "Paris", "age": 1}


async def test_ollama_format_json_and_schema(
    oll: ollama.AsyncClient, upstream: FakeServer
) -> None:
    """Ollama's format "json" and a schema reach either upstream and give JSON back."""
    reply = await oll.chat(model="demi", messages=ASK, format="json")
    assert isinstance(json.loads(reply.message.content or ""), dict)
    reply = await oll.chat(model="demi", messages=ASK, format=SCHEMA)
    assert json.loads(reply.message.content or "") == {"name": "Paris", "age": 1}
    if upstream.kind == "lmstudio":
        assert sent(upstream)["response_format"]["json_schema"]["schema"] == SCHEMA


# -- images and content parts -----------------------------------------------------------


async def test_image_message_both_faces(
    oai: openai.AsyncOpenAI, oll: ollama.AsyncClient, upstream: FakeServer
) -> None:
    """An image as an OpenAI part and as Ollama images reaches the upstream in its spelling."""
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    got = await oai.chat.completions.create(
        model="demi", messages=[{"role": "user", "content": parts}])  # type: ignore[list-item]
    assert got.choices[0].message.content
    first = sent(upstream)["messages"][0]
    reply = await oll.chat(model="demi", messages=[
        {"role": "user", "content": "What is this?", "images": [PNG]}])
    assert reply.message.content
    second = sent(upstream)["messages"][0]
    for message in (first, second):
        if upstream.kind == "ollama":
            assert message == {"role": "user", "content": "What is this?", "images": [PNG]}
        else:
            assert message["content"][0] == {"type": "text", "text": "What is this?"}
            assert message["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"


# -- options, usage and finish reasons -----------------------------------------------------


async def test_openai_options_reach_the_upstream(
    oai: openai.AsyncOpenAI, upstream: FakeServer
) -> None:
    """seed, top_p, stop, the penalties and max_completion_tokens arrive in the upstream's
    spelling (Ollama options, or OpenAI fields); a low limit gives finish_reason length."""
    got = await oai.chat.completions.create(
        model="demi", messages=ASK, seed=7, top_p=0.5, stop=["END"], presence_penalty=0.1,
        frequency_penalty=0.2, max_completion_tokens=2, extra_body={"top_k": 5})
    assert got.choices[0].finish_reason == "length"
    assert got.usage is not None and got.usage.completion_tokens == 2
    assert got.usage.prompt_tokens > 0
    body = sent(upstream)
    where = body["options"] if upstream.kind == "ollama" else body
    assert {k: where[k] for k in ("seed", "top_p", "stop", "presence_penalty",
                                  "frequency_penalty", "top_k")} == {
        "seed": 7, "top_p": 0.5, "stop": ["END"], "presence_penalty": 0.1,
        "frequency_penalty": 0.2, "top_k": 5}
    assert where["num_predict" if upstream.kind == "ollama" else "max_tokens"] == 2


async def test_ollama_options_and_counts(oll: ollama.AsyncClient, upstream: FakeServer) -> None:
    """Ollama options reach either upstream; eval_count and prompt_eval_count come from the
    upstream's usage, done_reason says length when num_predict bites; num_ctx and
    keep_alive stay with Ollama (an OpenAI server fixes them at load time)."""
    reply = await oll.chat(model="demi", messages=ASK, keep_alive="10m", options={
        "num_predict": 2, "seed": 3, "top_k": 4, "top_p": 0.9, "repeat_penalty": 1.1,
        "num_ctx": 4096})
    assert reply.done_reason == "length"
    assert reply.eval_count == 2
    assert reply.prompt_eval_count and reply.prompt_eval_count > 0
    body = sent(upstream)
    if upstream.kind == "ollama":
        assert body["keep_alive"] == "10m"
        assert body["options"]["num_ctx"] == 4096
        assert body["options"]["num_predict"] == 2
        assert body["options"]["repeat_penalty"] == 1.1
    else:
        assert body["max_tokens"] == 2 and body["top_k"] == 4 and body["seed"] == 3
        assert body["repeat_penalty"] == 1.1
        assert "num_ctx" not in body and "keep_alive" not in body


async def test_content_parts_not_blamed_on_a_provider(
    oai: openai.AsyncOpenAI, demi: ConductorProcess
) -> None:
    """openai client: text parts are served by Ollama; an image by http URL (Ollama cannot
    take one) is served by LM Studio, repeatedly, and Ollama stays active, circuit closed."""
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    raw = await oai.chat.completions.with_raw_response.create(
        model="demi", messages=[{"role": "user", "content": parts}])  # type: ignore[list-item]
    assert raw.headers["x-demi-provider"] == "ollama"
    url = [*parts, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    for _ in range(3):
        raw = await oai.chat.completions.with_raw_response.create(
            model="demi", messages=[{"role": "user", "content": url}])  # type: ignore[list-item]
        assert raw.headers["x-demi-provider"] == "lmstudio"
    status = demi.get_json("/status")
    assert status["active_provider"] == "ollama"
    assert status["providers"]["ollama"]["circuit"] == "closed"
