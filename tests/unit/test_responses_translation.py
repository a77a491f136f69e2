"""The Responses face's translation as pure logic: tool names both ways, and any body either
translates or is a 4xx naming what is wrong (never a DEMI bug)."""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.conductor.bodies import validate
from src.conductor.http.errors import ApiError
from src.conductor.responses.bodies import ResponsesBody, translate
from src.conductor.responses.tools import MAX_NAME, build_table

LOG = logging.getLogger("test.responses")


def fn(name: str) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": {"type": "object"}}


def namespace(name: str, *tools: dict[str, Any]) -> dict[str, Any]:
    return {"type": "namespace", "name": name, "description": f"{name} tools",
            "tools": list(tools)}


def test_nested_names_never_take_a_top_level_name() -> None:
    """A flattened name that equals a top-level function's gets a suffix, whatever the order;
    each call maps back to exactly the tool offered under that name."""
    table = build_table([namespace("a", fn("b")), fn("a__b")], LOG)
    offered = [t["function"]["name"] for t in table.offered]
    assert offered == ["a__b_2", "a__b"]
    assert table.called("a__b").namespace is None
    assert (table.called("a__b_2").name, table.called("a__b_2").namespace) == ("b", "a")


def test_flat_names_are_legal_and_within_64_characters() -> None:
    """Characters OpenAI's function names refuse become _, and long names are cut to 64 and
    kept unique."""
    long = "n" * 70
    table = build_table([namespace("mcp/server.x", fn("do it")),
                         namespace(long, fn("one")), namespace(long, fn("two"))], LOG)
    names = [t["function"]["name"] for t in table.offered]
    assert names[0] == "mcp_server_x__do_it"
    assert all(len(n) <= MAX_NAME for n in names) and len(set(names)) == 3
    assert [table.called(n).name for n in names] == ["do it", "one", "two"]


def test_a_call_demi_did_not_offer_comes_back_as_named() -> None:
    """A name the model made up is a plain function call under that name."""
    table = build_table([fn("f")], LOG)
    called = table.called("g")
    assert (called.kind, called.name, called.namespace) == ("function", "g", None)


def test_history_calls_go_up_under_the_offered_names() -> None:
    """A namespaced call in the input is spelled with the flat name this request offers."""
    body = validate({"model": "demi", "tools": [namespace("crm", fn("find"))], "input": [
        {"type": "function_call", "call_id": "c1", "name": "find", "namespace": "crm",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}]}, ResponsesBody)
    chat = translate(body, [], LOG)
    assert chat.messages[0]["tool_calls"][0]["function"]["name"] == "crm__find"
    assert chat.messages[1] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "role", "content", "name", "text", "x"]), inner, max_size=3),
    max_leaves=8,
)
ITEM = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "function_call", "function_call_output",
                             "custom_tool_call", "custom_tool_call_output", "reasoning",
                             "web_search_call", "item_reference", "x"]) | JSON,
    "role": st.sampled_from(["user", "assistant", "developer", "system", "tool"]) | JSON,
    "content": st.text(max_size=4) | st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file",
                                  "refusal", "x"])},
        optional={"text": JSON, "image_url": JSON, "refusal": JSON, "file_id": JSON}),
        max_size=2) | JSON,
    "call_id": JSON, "name": JSON, "namespace": JSON, "arguments": JSON, "output": JSON,
    "input": JSON,
})
TOOL = st.fixed_dictionaries({"type": st.sampled_from(
    ["function", "namespace", "custom", "web_search", "mcp"]) | JSON}, optional={
    "name": st.sampled_from(["f", "g"]) | JSON, "tools": st.lists(JSON, max_size=2) | JSON,
    "parameters": JSON, "strict": JSON, "description": JSON, "format": JSON})
BODY = st.fixed_dictionaries({"model": st.just("demi")}, optional={
    "input": st.text(max_size=4) | st.lists(ITEM, max_size=3) | JSON,
    "instructions": st.text(max_size=4) | st.lists(ITEM, max_size=2) | JSON,
    "tools": st.lists(TOOL, max_size=3) | JSON,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | JSON,
    "text": st.fixed_dictionaries({}, optional={"format": JSON}) | JSON,
    "reasoning": JSON, "previous_response_id": JSON, "store": JSON, "stream": JSON,
    "max_output_tokens": JSON, "temperature": JSON, "metadata": JSON, "include": JSON,
    "background": JSON, "conversation": JSON, "prompt": JSON, "parallel_tool_calls": JSON,
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODY, st.lists(ITEM, max_size=2))
def test_any_body_translates_or_is_a_4xx(data: dict[str, Any], history: list[Any]) -> None:
    """Whatever JSON arrives (and whatever a stored history holds), translation succeeds or
    raises a 4xx ApiError; nothing else escapes."""
    try:
        body = validate(data, ResponsesBody)
        chat = translate(body, history, LOG)
    except ApiError as exc:
        assert 400 <= exc.status < 500
        return
    assert chat.messages
    assert all(m["role"] in ("system", "user", "assistant", "tool") for m in chat.messages)
