"""Self-checks: the fakes answer tool calls, JSON mode, load/unload and model management as
the real servers do (shapes in PROTOCOLS.md), driven by the real clients."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

from src.testing.fakes.launcher import FakeServer

pytestmark = pytest.mark.timeout(60)
MODEL = "llama3.2:1b"
HI = [{"role": "user", "content": "Weather in Paris?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


async def test_ollama_fake_calls_tools_streamed_and_whole(fake_ollama: FakeServer) -> None:
    """Offered tools, the fake Ollama calls the first with object arguments; a tool result
    gets text."""
    client = ollama.AsyncClient(host=fake_ollama.url, timeout=5)
    reply = await client.chat(model=MODEL, messages=HI, tools=[TOOL])
    assert reply.message.tool_calls is not None
    assert reply.message.tool_calls[0].function.arguments == {"city": "Paris"}
    streamed = [c async for part in await client.chat(model=MODEL, messages=HI, tools=[TOOL],
                                                      stream=True)
                for c in part.message.tool_calls or ()]
    assert [c.function.name for c in streamed] == ["get_weather"]
    after = await client.chat(model=MODEL, tools=[TOOL], messages=[
        *HI, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert after.message.content and not after.message.tool_calls
    await client.close()


async def test_lmstudio_fake_calls_tools_in_fragments(fake_lmstudio: FakeServer) -> None:
    """The fake LM Studio streams delta.tool_calls fragments that the openai client joins."""
    async with openai.AsyncOpenAI(base_url=fake_lmstudio.url + "/v1", api_key="x") as client:
        whole = await client.chat.completions.create(model="qwen2.5-7b-instruct",
                                                     messages=HI, tools=[TOOL])
        call = (whole.choices[0].message.tool_calls or [])[0]
        assert whole.choices[0].finish_reason == "tool_calls"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        stream = await client.chat.completions.create(
            model="qwen2.5-7b-instruct", messages=HI, tools=[TOOL], stream=True)
        pieces = [p.function.arguments or "" async for chunk in stream
                  for choice in chunk.choices for p in choice.delta.tool_calls or ()
                  if p.function]
    assert len(pieces) == 3
    assert json.loads("".join(pieces)) == {"city": "Paris"}


async def test_lmstudio_fake_refuses_json_object(fake_lmstudio: FakeServer) -> None:
    """Like LM Studio: response_format json_object is a 400, json_schema gives JSON."""
    async with openai.AsyncOpenAI(base_url=fake_lmstudio.url + "/v1", api_key="x",
                                  max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match="json_schema"):
            await client.chat.completions.create(
                model="qwen2.5-7b-instruct", messages=HI,
                response_format={"type": "json_object"})
        got = await client.chat.completions.create(
            model="qwen2.5-7b-instruct", messages=HI, response_format={
                "type": "json_schema", "json_schema": {"name": "x", "schema": {
                    "type": "object", "properties": {"n": {"type": "integer"}}}}})
    assert json.loads(got.choices[0].message.content or "") == {"n": 1}


async def test_ollama_fake_loads_unloads_and_pulls(fake_ollama: FakeServer) -> None:
    """Preload says load, keep_alive 0 says unload; pull streams progress and adds the model."""
    client = ollama.AsyncClient(host=fake_ollama.url, timeout=5)
    loaded = await client.generate(model=MODEL)
    assert loaded.done_reason == "load"
    unloaded = await client.chat(model=MODEL, messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    statuses = [p.status async for p in await client.pull("qwen3:0.6b", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "qwen3:0.6b" in [m.model for m in (await client.list()).models]
    await client.copy("qwen3:0.6b", "mine:latest")
    await client.delete("mine:latest")
    with pytest.raises(ollama.ResponseError) as info:
        await client.delete("mine:latest")
    assert info.value.status_code == 404
    await client.close()


AGENT_TURN = [
    *HI,
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    {"role": "user", "content": "<reminder>keep it short</reminder>"},
]


async def test_a_turn_carrying_a_tool_result_gets_text(fake_ollama: FakeServer) -> None:
    """A tool result followed by more user text in the same turn (what agents send) is
    answered with text, not another call; a new turn after the answer gets a call again."""
    client = ollama.AsyncClient(host=fake_ollama.url, timeout=5)
    after = await client.chat(model=MODEL, tools=[TOOL], messages=AGENT_TURN)
    assert after.message.content and not after.message.tool_calls
    next_turn = [*AGENT_TURN, {"role": "assistant", "content": "Sunny."},
                 {"role": "user", "content": "And tomorrow?"}]
    again = await client.chat(model=MODEL, tools=[TOOL], messages=next_turn)
    assert again.message.tool_calls
    fake_ollama.control(tool_calls="once")
    once = await client.chat(model=MODEL, tools=[TOOL], messages=next_turn)
    assert once.message.content and not once.message.tool_calls
    fresh = await client.chat(model=MODEL, tools=[TOOL], messages=HI)
    assert fresh.message.tool_calls
    await client.close()


async def test_lmstudio_fake_tool_calls_once(fake_lmstudio: FakeServer) -> None:
    """tool_calls: once on the OpenAI format too; an unknown mode is refused."""
    fake_lmstudio.control(tool_calls="once")
    turns: list = [*HI, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "More?"}]
    async with openai.AsyncOpenAI(base_url=fake_lmstudio.url + "/v1", api_key="x") as client:
        reply = await client.chat.completions.create(model="qwen2.5-7b-instruct",
                                                     messages=turns, tools=[TOOL])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content
    with pytest.raises(Exception, match="tool_calls must be one of"):
        fake_lmstudio.control(tool_calls="sometimes")
