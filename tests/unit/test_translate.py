"""The request translation between OpenAI's and Ollama's spellings (pure functions)."""

from __future__ import annotations

import base64
import json

import pytest

from src.llm.errors import CannotExpress, RequestError
from src.llm.providers._translate import (
    add_fragment,
    openai_tool_calls,
    to_ollama,
    to_openai,
)
from src.llm.types import ChatRequest

PNG = b"\x89PNG\r\n\x1a\nabc"
B64 = base64.b64encode(PNG).decode()
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
CONVERSATION = [
    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                                 {"type": "image_url",
                                  "image_url": {"url": f"data:image/png;base64,{B64}"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
]


def test_openai_conversation_in_ollama_spelling() -> None:
    """Parts joined, image bytes pulled out, arguments an object, tool_call_id → tool_name."""
    said = to_ollama(ChatRequest(messages=CONVERSATION, options={"tools": TOOLS}))
    user, assistant, tool = said.messages
    assert user == {"role": "user", "content": "a\nb", "images": [PNG]}
    assert assistant["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]
    assert tool == {"role": "tool", "content": "42", "tool_name": "f"}
    assert said.tools == TOOLS


def test_ollama_conversation_in_openai_spelling() -> None:
    """images → image_url parts with a sniffed type; object arguments → a JSON string with
    an id that the tool reply (by tool_name) points to."""
    messages = [
        {"role": "user", "content": "look", "images": [B64]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "f", "arguments": {"x": 1}}}]},
        {"role": "tool", "content": "42", "tool_name": "f"},
    ]
    payload = to_openai(ChatRequest(messages=messages), json_object_as_schema=False)
    user, assistant, tool = payload["messages"]
    assert user["content"] == [{"type": "text", "text": "look"}, {
        "type": "image_url", "image_url": {"url": f"data:image/png;base64,{B64}"}}]
    call = assistant["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"x": 1}
    assert assistant["content"] is None
    assert tool["tool_call_id"] == call["id"] and "tool_name" not in tool


@pytest.mark.parametrize(("fmt", "as_schema", "expected"), [
    ("json", False, {"type": "json_object"}),
    ("json", True, {"type": "json_schema", "json_schema": {
        "name": "json_object", "schema": {"type": "object"}}}),
    ({"type": "object"}, True, {"type": "json_schema", "json_schema": {
        "name": "schema", "schema": {"type": "object"}}}),
])
def test_format_becomes_response_format(fmt: object, as_schema: bool, expected: object) -> None:
    """Ollama's format as OpenAI's response_format; json_object as a schema for LM Studio."""
    payload = to_openai(ChatRequest(messages=[], options={"format": fmt}),
                        json_object_as_schema=as_schema)
    assert payload["response_format"] == expected


def test_response_format_becomes_format() -> None:
    """json_object → "json"; json_schema → the schema itself."""
    schema = {"type": "object", "properties": {}}
    assert to_ollama(ChatRequest(messages=[], options={
        "response_format": {"type": "json_object"}})).format == "json"
    assert to_ollama(ChatRequest(messages=[], options={"response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})).format == schema


def test_tool_choice() -> None:
    """none drops the tools for both; required has no Ollama equivalent; OpenAI keeps it."""
    none = ChatRequest(messages=[], options={"tools": TOOLS, "tool_choice": "none"})
    assert to_ollama(none).tools is None
    assert "tools" not in to_openai(none, json_object_as_schema=False)
    required = ChatRequest(messages=[], options={"tools": TOOLS, "tool_choice": "required"})
    with pytest.raises(CannotExpress) as info:
        to_ollama(required)
    assert info.value.field == "tool_choice"
    assert to_openai(required, json_object_as_schema=False)["tool_choice"] == "required"


@pytest.mark.parametrize("image", ["/etc/hostname", "not base64!", 5])
def test_an_image_that_is_not_base64_is_the_callers_mistake(image: object) -> None:
    """Never a path read from disk (the ollama client would): a 400, not a skip."""
    with pytest.raises(RequestError) as info:
        to_ollama(ChatRequest(messages=[{"role": "user", "content": "x", "images": [image]}]))
    assert not isinstance(info.value, CannotExpress)


def test_streamed_tool_call_fragments_assemble() -> None:
    """delta.tool_calls pieces keyed by index join into whole calls, in index order."""
    fragments: dict[int, dict[str, object]] = {}
    assert add_fragment(fragments, [{"index": 1, "id": "b", "function": {"name": "g",
                                                                        "arguments": ""}}])
    assert add_fragment(fragments, [{"index": 0, "id": "a", "function": {"name": "f",
                                                                        "arguments": '{"x"'}}])
    assert add_fragment(fragments, [{"index": 0, "function": {"arguments": ": 1}"}}])
    assert not add_fragment(fragments, "nonsense")
    calls = openai_tool_calls(fragments)  # type: ignore[arg-type]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "f", '{"x": 1}'), ("b", "g", "{}")]
