"""A bounded fuzz of both faces over HTTP (hypothesis), against a real conductor process.

Bodies mix valid and hostile fields (tools, content parts, images, formats, options, odd
roles, wrong JSON types) on every chat, completion, Responses and embedding endpoint. Properties:
never a 5xx, never a dropped connection, and the service still answers afterwards, with
Ollama still the active provider (a caller's request never knocks it out).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.testing.fakes.launcher import FakeServer
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import ConductorProcess

PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
         "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"]
PNG = "iVBORw0KGgo="
SCALAR = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | \
    st.text(max_size=6)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.sampled_from([f"data:image/png;base64,{PNG}", "https://x/a.png",
                                 "data:image/png,zz", "data:;base64,@@"])})}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "file", "x"])}),
    JSON,
)
TOOL = {"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}}
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "system", "assistant", "tool", "developer",
                              "bot"]) | JSON,
     "content": st.text(max_size=10) | st.lists(PART, max_size=3) | JSON},
    optional={
        "images": st.lists(st.sampled_from([PNG, "/etc/hostname", "!!"]), max_size=2) | JSON,
        "tool_calls": st.just([{"id": "c1", "type": "function", "function": {
            "name": "f", "arguments": '{"a": "x"}'}}]) | JSON,
        "tool_call_id": st.text(max_size=4), "tool_name": st.text(max_size=4),
    },
)
SIMPLE = st.fixed_dictionaries({"role": st.just("user"),
                                "content": st.text(max_size=10) | st.lists(PART, max_size=3)})
# Mostly well-formed where it matters (so requests get past validation to the providers),
# hostile elsewhere.
REQUIRED = {
    "model": st.just("demi") | st.just("demi") | st.sampled_from(["llama3.2:1b", "nope", ""])
    | JSON,
    "messages": st.lists(SIMPLE | MESSAGE, min_size=1, max_size=3) | JSON,
    "prompt": st.text(min_size=1, max_size=10) | JSON,
    "input": st.text(min_size=1, max_size=10) | st.lists(st.text(max_size=5), max_size=3)
    | st.lists(SIMPLE | MESSAGE, min_size=1, max_size=3) | JSON,
}
FIELDS = {
    "stream": st.booleans() | JSON,
    "tools": st.just([TOOL]) | JSON,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | JSON,
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "json_schema",
                                        "json_schema": {"name": "x", "schema": TOOL[
                                            "function"]["parameters"]}}]) | JSON,
    "format": st.sampled_from(["json", {"type": "object"}]) | JSON,
    "options": st.dictionaries(st.sampled_from(["num_predict", "top_k", "seed", "stop",
                                                "num_ctx", "temperature"]), JSON, max_size=3),
    "keep_alive": st.sampled_from([0, "5m", -1]) | JSON,
    "max_tokens": st.integers(-1, 3) | JSON,
    "stop": JSON, "seed": JSON, "top_p": JSON, "n": JSON, "encoding_format": JSON,
    "stream_options": JSON, "images": JSON, "system": JSON, "echo": JSON, "suffix": JSON,
}
BODY = st.fixed_dictionaries(REQUIRED, optional=FIELDS)
@pytest.fixture
def fuzzed(make_demi: MakeConductor, ollama_fake: FakeServer) -> Iterator[ConductorProcess]:
    """One conductor for all examples (that it survives them all is the point)."""
    ollama_fake.control(models=["llama3.2:1b", "nomic-embed-text:latest"])
    yield make_demi(env={"OLLAMA_EMBEDDING_MODEL": "nomic-embed-text"})


def post(demi: ConductorProcess, path: str, body: Any) -> tuple[int, bytes]:
    """One request on a fresh connection; a dropped connection raises (fails the test)."""
    conn = http.client.HTTPConnection("127.0.0.1", demi.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


EXAMPLES = int(os.environ.get("DEMI_FUZZ_EXAMPLES", "150"))
"""Bounded for CI (a few seconds); set DEMI_FUZZ_EXAMPLES for a longer run."""


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), body=BODY)
def test_both_faces_never_5xx_never_drop(
    fuzzed: ConductorProcess, path: str, body: dict[str, Any]
) -> None:
    """Any body on any endpoint: a complete answer below 500, and Ollama stays active."""
    status, payload = post(fuzzed, path, body)
    assert status < 500, (path, body, status, payload[:300])
    assert fuzzed.get_json("/status")["active_provider"] == "ollama", (path, body)


def test_service_still_answers_after_the_fuzz(fuzzed: ConductorProcess) -> None:
    """A hostile batch first, then a normal chat: 200 from Ollama, Ollama still active."""
    for path in PATHS:
        post(fuzzed, path, {"model": "demi", "messages": [{"role": {}, "content": 1}],
                            "tools": "x", "format": [], "input": 5, "prompt": {}})
    status, payload = post(fuzzed, "/api/chat", {"model": "demi", "stream": False,
                                                  "messages": [{"role": "user",
                                                                "content": "hi"}]})
    assert status == 200 and json.loads(payload)["message"]["content"]
    assert fuzzed.get_json("/status")["active_provider"] == "ollama"
