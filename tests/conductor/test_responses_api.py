"""The Responses face (``/v1/responses``), in process over the fake upstreams, driven by the
real ``openai`` client's ``responses`` API and the OpenAI Agents SDK."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from src.core.config import DemiConfig
from src.llm import UnifiedLLMInference
from src.llm.factory import build_providers
from src.testing.fakes.launcher import FakeServer
from src.testing.scripted import Reply, ScriptedProvider
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import (
    LMSTUDIO_MODEL,
    LMSTUDIO_REPLY,
    OLLAMA_MODEL,
    OLLAMA_REPLY,
    conductor_config,
    upstream_chats,
)

Client = Callable[..., Awaitable[openai.AsyncOpenAI]]
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture
async def client(make_conductor: MakeConductor) -> AsyncIterator[Client]:
    """``await client(**config_overrides)``: the ``openai`` client on a fresh conductor."""
    opened: list[openai.AsyncOpenAI] = []

    async def make(**overrides: Any) -> openai.AsyncOpenAI:
        c = await make_conductor(**overrides)
        opened.append(openai.AsyncOpenAI(base_url=str(c.client.make_url("/v1")),
                                         api_key="x", max_retries=0, timeout=30))
        return opened[-1]

    try:
        yield make
    finally:
        for oai in opened:
            await oai.close()


@pytest.fixture
async def oai(client: Client) -> openai.AsyncOpenAI:
    return await client()


def last_chat(server: FakeServer) -> dict[str, Any]:
    chats = upstream_chats(server)
    assert chats, f"{server.kind} got no chat request"
    body: dict[str, Any] = chats[-1]["json"]
    return body


async def events_of(stream: Any) -> list[Any]:
    return [event async for event in stream]


# -- create ------------------------------------------------------------------------------


async def test_create_returns_a_response_object(oai: openai.AsyncOpenAI) -> None:
    """A string input gets a completed response: one message item, output_text, usage."""
    raw = await oai.responses.with_raw_response.create(model="demi", input="hi")
    assert raw.headers["x-demi-provider"] == "ollama"
    resp = raw.parse()
    assert resp.id.startswith("resp_")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.model == OLLAMA_MODEL
    assert resp.output_text == OLLAMA_REPLY
    [item] = resp.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert [(p.type, p.text) for p in item.content] == [("output_text", OLLAMA_REPLY)]
    assert resp.usage is not None
    assert resp.usage.output_tokens == 3
    assert resp.usage.total_tokens == resp.usage.input_tokens + 3


async def test_instructions_and_items_become_chat_messages(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """instructions lead as system; developer becomes system; text parts are joined."""
    await oai.responses.create(
        model="demi", instructions="Be brief.",
        input=[
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "Rules."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "a"},
                                         {"type": "input_text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"role": "user", "content": "c"},
        ],
        temperature=0.3, top_p=0.9, max_output_tokens=50,
    )
    sent = last_chat(fake_ollama)
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "Be brief."), ("system", "Rules."), ("user", "a\nb"), ("assistant", "ok"),
        ("user", "c")]
    assert sent["options"]["temperature"] == 0.3
    assert sent["options"]["top_p"] == 0.9
    assert sent["options"]["num_predict"] == 50


async def test_max_output_tokens_cut_makes_an_incomplete_response(
    oai: openai.AsyncOpenAI,
) -> None:
    """A reply stopped by max_output_tokens is status incomplete, reason max_output_tokens."""
    resp = await oai.responses.create(model="demi", input="hi", max_output_tokens=1)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "Hello"


async def test_images_reach_ollama_as_images(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """An input_image data URL arrives at Ollama as a base64 image beside the text."""
    await oai.responses.create(model="demi", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
    ]}])
    [message] = last_chat(fake_ollama)["messages"]
    assert message["content"] == "what is this?"
    assert message["images"] == [PNG]


async def test_reasoning_effort_becomes_think(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """reasoning.effort maps to Ollama's think (none: off, low/medium/high: that level)."""
    await oai.responses.create(model="demi", input="hi", reasoning={"effort": "none"})
    assert last_chat(fake_ollama)["think"] is False
    await oai.responses.create(model="demi", input="hi", reasoning={"effort": "high"})
    assert last_chat(fake_ollama)["think"] == "high"


async def test_json_schema_output(oai: openai.AsyncOpenAI, fake_ollama: FakeServer) -> None:
    """text.format json_schema reaches Ollama as format: the schema; the text is that JSON."""
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "rank": {"type": "integer"}},
              "required": ["city", "rank"], "additionalProperties": False}
    resp = await oai.responses.create(model="demi", input="a city", text={"format": {
        "type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    assert json.loads(resp.output_text) == {"city": "Paris", "rank": 1}
    assert last_chat(fake_ollama)["format"] == schema
    assert resp.text is not None and resp.text.format is not None
    assert resp.text.format.type == "json_schema"


async def test_json_object_output_through_lmstudio(
    client: Client, fake_lmstudio: FakeServer
) -> None:
    """text.format json_object reaches LM Studio as the json_schema it accepts."""
    oai = await client(llm={"provider": "lmstudio", "enable_fallback": False})
    resp = await oai.responses.create(model="demi", input="hi",
                                      text={"format": {"type": "json_object"}})
    assert json.loads(resp.output_text) == {"reply": LMSTUDIO_REPLY}
    assert last_chat(fake_lmstudio)["response_format"]["type"] == "json_schema"


# -- streaming ---------------------------------------------------------------------------


TEXT_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
    "response.output_text.delta", "response.output_text.done", "response.content_part.done",
    "response.output_item.done", "response.completed",
]


async def test_stream_follows_the_event_sequence(oai: openai.AsyncOpenAI) -> None:
    """Streaming: the documented events in order, numbered, the deltas adding up."""
    events = await events_of(await oai.responses.create(model="demi", input="hi",
                                                        stream=True))
    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == OLLAMA_REPLY
    assert events[0].response.status == "in_progress"
    done = events[-1].response
    assert done.status == "completed"
    assert done.id == events[0].response.id
    assert done.output_text == OLLAMA_REPLY
    assert done.usage is not None and done.usage.output_tokens == 3
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
    assert item_ids == {done.output[0].id}


async def test_stream_helper_gets_the_final_response(oai: openai.AsyncOpenAI) -> None:
    """The client's responses.stream() helper assembles the same response."""
    async with oai.responses.stream(model="demi", input="hi") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == OLLAMA_REPLY
    assert final.status == "completed"


async def test_stream_broken_mid_reply_is_continued_by_the_next_provider(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """Ollama breaks after one chunk: LM Studio continues the same response; the completed
    response names both providers."""
    fake_ollama.control(mode="cut", after_chunks=1)
    events = await events_of(await oai.responses.create(model="demi", input="hi",
                                                        stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("Hello")
    assert events[-1].response.output_text == text
    extra = events[-1].response.model_extra or {}
    assert extra["demi"] == {"providers": ["ollama", "lmstudio"]}


async def test_stream_broken_with_nobody_left_ends_with_response_failed(
    client: Client, fake_ollama: FakeServer
) -> None:
    """A break nobody can continue ends the stream with response.failed and the error."""
    oai = await client(llm={"mid_stream": "error"})
    fake_ollama.control(mode="midstream_error", after_chunks=1)
    events = await events_of(await oai.responses.create(model="demi", input="hi",
                                                        stream=True))
    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "server_error"
    assert "response.completed" not in [e.type for e in events]


# -- tools -------------------------------------------------------------------------------


async def test_function_tools_give_function_call_items(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """A function tool reaches Ollama in chat shape; the call comes back as a function_call
    item with call_id, name and JSON arguments."""
    resp = await oai.responses.create(model="demi", input="weather?", tools=[WEATHER])
    [call] = resp.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id
    [tool] = last_chat(fake_ollama)["tools"]
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"] == WEATHER["parameters"]


async def test_function_call_output_continues_the_turn(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """The call and its function_call_output go back as tool_calls and a tool message, and
    the model answers with text."""
    first = await oai.responses.create(model="demi", input="weather?", tools=[WEATHER])
    [call] = first.output
    assert call.type == "function_call"
    resp = await oai.responses.create(model="demi", tools=[WEATHER], input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ])
    assert resp.output_text == OLLAMA_REPLY
    messages = last_chat(fake_ollama)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                        "arguments": {"city": "Paris"}}
    assert messages[2]["content"] == "sunny"
    assert messages[2]["tool_name"] == "get_weather"


async def test_streamed_function_call_events(oai: openai.AsyncOpenAI) -> None:
    """Streamed, a call is output_item.added, arguments delta/done, output_item.done."""
    events = await events_of(await oai.responses.create(
        model="demi", input="weather?", tools=[WEATHER], stream=True))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    done = events[-2].item
    assert done.type == "function_call" and done.name == "get_weather"
    assert json.loads(events[4].arguments) == {"city": "Paris"}
    assert events[-1].response.output[0].call_id == done.call_id


NAMESPACE = {"type": "namespace", "name": "crm", "description": "Customer records.",
             "tools": [{"type": "function", "name": "lookup", "description": "Find one.",
                        "strict": False,
                        "parameters": {"type": "object", "properties": {
                            "email": {"type": "string"}}, "required": ["email"]}}]}


async def test_namespace_tools_map_back_exactly(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """A namespaced function is offered under a flat name, its call comes back as name +
    namespace, and the call in the next turn's history goes up under the flat name again."""
    tools: Any = [NAMESPACE, WEATHER, {"type": "web_search", "external_web_access": False}]
    resp = await oai.responses.create(model="demi", input="find bob", tools=tools)
    [call] = resp.output
    assert call.type == "function_call"
    assert (call.name, call.namespace) == ("lookup", "crm")
    assert json.loads(call.arguments) == {"email": "Paris"}
    offered = [t["function"]["name"] for t in last_chat(fake_ollama)["tools"]]
    assert offered == ["crm__lookup", "get_weather"]  # web_search dropped, never a 400
    await oai.responses.create(model="demi", tools=tools, input=[
        {"role": "user", "content": "find bob"},
        {"type": "function_call", "call_id": call.call_id, "name": "lookup",
         "namespace": "crm", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "found"},
    ])
    history = last_chat(fake_ollama)["messages"]
    assert history[1]["tool_calls"][0]["function"]["name"] == "crm__lookup"


async def test_hosted_tools_are_dropped_and_logged_at_debug(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Offered only hosted tools, the model is offered none and answers text; DEBUG says so."""
    caplog.set_level(logging.DEBUG, logger="demi.conductor")
    resp = await oai.responses.create(model="demi", input="hi", tools=[
        {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "computer_use_preview", "display_width": 1, "display_height": 1,
         "environment": "linux"}], tool_choice={"type": "web_search_preview"})
    assert resp.output_text == OLLAMA_REPLY
    assert not last_chat(fake_ollama).get("tools")
    dropped = [r for r in caplog.records if "dropped hosted tool" in r.getMessage()]
    assert len(dropped) == 3 and all(r.levelno == logging.DEBUG for r in dropped)


async def test_custom_tools_take_free_text(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """A custom tool is offered as a function of one string; its call is a custom_tool_call
    whose input is that string, and it goes back up as the same function call."""
    patch = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    resp = await oai.responses.create(model="demi", input="edit", tools=[patch])
    [call] = resp.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("apply_patch", "Paris")
    offered = last_chat(fake_ollama)["tools"][0]["function"]
    assert offered["parameters"]["required"] == ["input"]
    assert "start: /.+/" in offered["parameters"]["properties"]["input"]["description"]
    await oai.responses.create(model="demi", tools=[patch], input=[
        {"role": "user", "content": "edit"},
        {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch",
         "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "done"},
    ])
    sent = last_chat(fake_ollama)["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == {"input": "*** Begin Patch"}
    assert sent[2]["content"] == "done"


# -- stored responses ----------------------------------------------------------------------


async def test_previous_response_id_continues_the_conversation(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """previous_response_id sends every earlier turn (input and output) before the new
    input; the earlier instructions are not carried over, as OpenAI's."""
    first = await oai.responses.create(model="demi", input="My name is Ada.",
                                       instructions="Be kind.")
    second = await oai.responses.create(model="demi", input="And my name?",
                                        previous_response_id=first.id)
    third = await oai.responses.create(model="demi", input="Again?", stream=True,
                                       previous_response_id=second.id)
    await events_of(third)
    assert [(m["role"], m["content"]) for m in last_chat(fake_ollama)["messages"]] == [
        ("user", "My name is Ada."), ("assistant", OLLAMA_REPLY),
        ("user", "And my name?"), ("assistant", OLLAMA_REPLY), ("user", "Again?")]
    assert second.previous_response_id == first.id


async def test_deleting_an_earlier_response_never_shortens_a_later_one(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """Each stored response holds its whole conversation: with the first turn deleted, the
    second still continues with both turns."""
    first = await oai.responses.create(model="demi", input="one")
    second = await oai.responses.create(model="demi", input="two",
                                        previous_response_id=first.id)
    await oai.responses.delete(first.id)
    await oai.responses.create(model="demi", input="three", previous_response_id=second.id)
    assert [m["content"] for m in last_chat(fake_ollama)["messages"]] == [
        "one", OLLAMA_REPLY, "two", OLLAMA_REPLY, "three"]


async def test_previous_response_with_a_tool_call_takes_its_output(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """A stored function_call is answered by a function_call_output in the next request."""
    first = await oai.responses.create(model="demi", input="weather?", tools=[WEATHER])
    [call] = first.output
    assert call.type == "function_call"
    resp = await oai.responses.create(
        model="demi", tools=[WEATHER], previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    assert resp.output_text == OLLAMA_REPLY
    roles = [m["role"] for m in last_chat(fake_ollama)["messages"]]
    assert roles == ["user", "assistant", "tool"]


async def test_retrieve_input_items_and_delete(oai: openai.AsyncOpenAI) -> None:
    """GET returns the stored response; input_items lists its input; DELETE forgets it."""
    made = await oai.responses.create(model="demi", input="hi", metadata={"k": "v"})
    got = await oai.responses.retrieve(made.id)
    assert got.id == made.id
    assert got.output_text == OLLAMA_REPLY
    assert got.metadata == {"k": "v"}
    items = [item async for item in oai.responses.input_items.list(made.id)]
    assert [(i.type, i.role) for i in items] == [("message", "user")]  # type: ignore[union-attr]
    await oai.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        await oai.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        await oai.responses.delete(made.id)


async def test_streamed_response_is_stored_before_it_completes(
    oai: openai.AsyncOpenAI,
) -> None:
    """The response named in response.completed can be retrieved at once."""
    events = await events_of(await oai.responses.create(model="demi", input="hi",
                                                        stream=True))
    got = await oai.responses.retrieve(events[-1].response.id)
    assert got.output_text == OLLAMA_REPLY


async def test_store_false_keeps_nothing(oai: openai.AsyncOpenAI) -> None:
    """store: false answers as usual and keeps nothing to retrieve or continue."""
    made = await oai.responses.create(model="demi", input="hi", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        await oai.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        await oai.responses.create(model="demi", input="x", previous_response_id=made.id)


async def test_unknown_previous_response_id_is_a_404_in_openai_shape(
    make_conductor: MakeConductor, fake_ollama: FakeServer
) -> None:
    """An unknown previous_response_id is a 404 naming the field; nothing is asked of any
    provider (the earlier turns are never silently dropped)."""
    c = await make_conductor()
    resp = await c.client.post("/v1/responses", json={
        "model": "demi", "input": "hi", "previous_response_id": "resp_nope"})
    assert resp.status == 404
    err = (await resp.json())["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == "previous_response_id"
    assert "resp_nope" in err["message"]
    assert upstream_chats(fake_ollama) == []


async def test_sqlite_store_survives_a_restart(client: Client, tmp_path: Path) -> None:
    """With conductor.responses.store_path a new app (a restart) retrieves and continues
    responses the old one stored."""
    store = {"conductor": {"responses": {"store_path": str(tmp_path / "responses.db")}}}
    before = await client(**store)
    made = await before.responses.create(model="demi", input="remember me")
    streamed = await events_of(await before.responses.create(
        model="demi", input="and me", stream=True))
    after = await client(**store)
    got = await after.responses.retrieve(made.id)
    assert got.output_text == OLLAMA_REPLY
    assert (await after.responses.retrieve(streamed[-1].response.id)).status == "completed"
    nxt = await after.responses.create(model="demi", input="who?", previous_response_id=made.id)
    assert nxt.previous_response_id == made.id


async def test_the_store_keeps_max_items(client: Client) -> None:
    """Past conductor.responses.max_items the oldest response is gone (404), newer ones stay."""
    oai = await client(conductor={"responses": {"max_items": 2}})
    ids = [(await oai.responses.create(model="demi", input=f"{i}")).id for i in range(3)]
    with pytest.raises(openai.NotFoundError):
        await oai.responses.retrieve(ids[0])
    assert [(await oai.responses.retrieve(i)).id for i in ids[1:]] == ids[1:]


# -- bad input and refusals --------------------------------------------------------------


@pytest.mark.parametrize(("body", "param"), [
    ({"input": 5}, "input"),
    ({}, "input"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "mystery"}]}, "input[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0].type"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
])
async def test_bad_requests_are_400s_naming_the_field(
    oai: openai.AsyncOpenAI, body: dict[str, Any], param: str
) -> None:
    """A caller's mistake or a refused feature is a 400 whose param names the field."""
    with pytest.raises(openai.BadRequestError) as info:
        await oai.post("/responses", body={"model": "demi", **body}, cast_to=object)
    assert info.value.param == param, info.value.message


async def test_unknown_model_is_a_404(oai: openai.AsyncOpenAI) -> None:
    """An unknown model is model_not_found, as on the chat face."""
    with pytest.raises(openai.NotFoundError) as info:
        await oai.responses.create(model="gpt-9", input="hi")
    assert info.value.code == "model_not_found"


async def test_what_codex_sends_is_accepted(
    client: Client, fake_ollama: FakeServer
) -> None:
    """The fields Codex sends (observed from codex exec 0.169) are accepted: store false,
    include, reasoning summary, prompt_cache_key, client_metadata, developer items, strict
    false function tools, a namespace tool and web_search."""
    oai = await client(conductor={"max_body_bytes": 65536})
    stream = await oai.post("/responses", cast_to=object, stream=True,
                            stream_cls=openai.AsyncStream[object], body={
        "model": "demi", "stream": True, "store": False, "tool_choice": "auto",
        "parallel_tool_calls": True, "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
        "client_metadata": {"x-codex-turn-metadata": "{}"},
        "input": [
            {"type": "message", "id": "msg_a", "role": "developer",
             "content": [{"type": "input_text", "text": "You are an agent."}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Say hello"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
        ],
        "tools": [
            {**WEATHER, "strict": False}, NAMESPACE,
            {"type": "web_search", "external_web_access": False},
        ],
    })
    events = [e async for e in stream]
    assert events[-1]["type"] == "response.completed"  # type: ignore[index]
    offered = [t["function"]["name"] for t in last_chat(fake_ollama)["tools"]]
    assert offered == ["get_weather", "crm__lookup"]


async def test_message_content_never_logged_at_info_or_above(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests, streams, tools, a broken stream and bad input log no content at INFO+."""
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-words"
    item = {"role": "user", "content": secret}
    await oai.responses.create(model="demi", input=secret, instructions=secret)
    await events_of(await oai.responses.create(model="demi", input=[item], stream=True,
                                               tools=[{**WEATHER, "description": secret}]))
    with pytest.raises(openai.BadRequestError):
        await oai.responses.create(model="demi", input=[{"role": secret, "content": secret}])
    fake_ollama.control(mode="cut", after_chunks=1)
    await events_of(await oai.responses.create(model="demi", input=secret, stream=True))
    assert caplog.records
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert secret not in record.getMessage()


# -- failover and provider kinds ----------------------------------------------------------


async def test_fails_over_when_the_primary_is_killed(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """Ollama killed: LM Studio answers the same request, whole and streamed, flagged."""
    fake_ollama.kill()
    raw = await oai.responses.with_raw_response.create(model="demi", input="hi")
    assert raw.headers["x-demi-provider"] == "lmstudio"
    assert raw.headers["x-demi-fallback"] == "true"
    assert raw.parse().output_text == LMSTUDIO_REPLY
    assert raw.parse().model == LMSTUDIO_MODEL
    events = await events_of(await oai.responses.create(model="demi", input="hi",
                                                        stream=True))
    assert events[-1].response.output_text == LMSTUDIO_REPLY


async def test_every_provider_down_is_a_503_before_any_event(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """With nobody to answer, a streamed request is a plain 503 all_providers_failed (no
    event stream was started), in OpenAI's shape."""
    fake_ollama.kill()
    fake_lmstudio.kill()
    with pytest.raises(openai.InternalServerError) as info:
        await oai.responses.create(model="demi", input="hi", stream=True)
    assert info.value.status_code == 503
    assert info.value.code == "all_providers_failed"


async def test_through_configured_providers_of_each_server_kind(
    client: Client, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """llm.providers entries of kind ollama and openai each serve the face, tools included."""
    entries = [
        {"name": "box-ollama", "kind": "ollama", "base_url": fake_ollama.url,
         "model": OLLAMA_MODEL},
        {"name": "box-openai", "kind": "openai", "base_url": fake_lmstudio.url},
    ]
    for entry in entries:
        oai = await client(llm={"providers": [entry], "order": [entry["name"]],
                                "enable_fallback": False})
        raw = await oai.responses.with_raw_response.create(model="demi", input="weather?",
                                                           tools=[WEATHER])
        assert raw.headers["x-demi-provider"] == entry["name"]
        [call] = raw.parse().output
        assert call.type == "function_call" and call.name == "get_weather"
        text = await oai.responses.create(model="demi", input="hi")
        assert text.output_text in (OLLAMA_REPLY, LMSTUDIO_REPLY)


async def test_through_the_embedded_model(fake_ollama: FakeServer,
                                          fake_lmstudio: FakeServer) -> None:
    """Both servers down, the embedded provider (scripted) answers the face."""
    from aiohttp.test_utils import TestClient, TestServer

    from src.conductor.http.server import create_app

    fake_ollama.kill()
    fake_lmstudio.kill()
    config = DemiConfig.from_mapping(conductor_config(fake_ollama.url, fake_lmstudio.url))
    log = logging.getLogger("test.responses")
    embedded = ScriptedProvider("embedded", then=Reply("Hello from the embedded model."),
                                display_name="Embedded", kind="embedded")
    providers = {**build_providers(config, log), "embedded": embedded}
    async with UnifiedLLMInference(config, log, providers=providers) as llm:
        web = TestClient(TestServer(create_app(llm, config)))
        await web.start_server()
        try:
            async with openai.AsyncOpenAI(base_url=str(web.make_url("/v1")),
                                          api_key="x", max_retries=0) as oai:
                raw = await oai.responses.with_raw_response.create(model="demi", input="hi")
                events = await events_of(await oai.responses.create(
                    model="demi", input="hi", stream=True))
        finally:
            await web.close()
    assert raw.headers["x-demi-provider"] == "embedded"
    assert raw.parse().output_text == "Hello from the embedded model."
    assert events[-1].response.output_text == "Hello from the embedded model."


# -- the OpenAI Agents SDK -------------------------------------------------------------------


async def test_openai_agents_sdk_runs_a_tool_loop(
    oai: openai.AsyncOpenAI, fake_ollama: FakeServer
) -> None:
    """The Agents SDK with its default (Responses) model: the agent calls its tool, gets the
    result back to the model, and ends with the model's text."""
    from agents import Agent, RunConfig, Runner, function_tool
    from agents.models.openai_provider import OpenAIProvider

    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    agent = Agent(name="helper", instructions="Answer briefly.", model="demi",
                  tools=[get_weather])
    run = RunConfig(model_provider=OpenAIProvider(openai_client=oai), tracing_disabled=True)
    result = await Runner.run(agent, "Weather in Paris?", run_config=run)
    assert calls == ["Paris"]
    assert result.final_output == OLLAMA_REPLY
    messages = last_chat(fake_ollama)["messages"]
    assert messages[0] == {"role": "system", "content": "Answer briefly."}
    assert messages[-1]["role"] == "tool" and messages[-1]["content"] == "sunny in Paris"


async def test_openai_agents_sdk_streams(oai: openai.AsyncOpenAI) -> None:
    """Runner.run_streamed over the face ends with the model's text."""
    from agents import Agent, RunConfig, Runner
    from agents.models.openai_provider import OpenAIProvider

    agent = Agent(name="helper", model="demi")
    run = RunConfig(model_provider=OpenAIProvider(openai_client=oai), tracing_disabled=True)
    result = Runner.run_streamed(agent, "hi", run_config=run)
    kinds = [event.type async for event in result.stream_events()]
    assert "raw_response_event" in kinds
    assert result.final_output == OLLAMA_REPLY
