"""Fuzz-style bad inputs get a 400 naming the field, in each face's own error shape."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.conductor.bodies import validate
from src.conductor.http.errors import ApiError
from src.conductor.ollama.bodies import ChatBody, GenerateBody
from src.conductor.openai.bodies import ChatCompletionBody
from tests.conductor.helpers import Conductor

NAN = float("nan")
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("role object", {"messages": [{"role": {"x": 1}, "content": "hi"}]}, "messages[0].role"),
    ("role array", {"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ("content number", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("content object", {"messages": [{"role": "user", "content": {}}]}, "messages[0].content"),
    ("message number", {"messages": [7]}, "messages[0]"),
]
OPENAI_BAD = [
    *BAD,
    ("temperature NaN", {"temperature": NAN}, "temperature"),
    ("top_p infinite", {"top_p": math.inf}, "top_p"),
    ("max_tokens NaN", {"max_tokens": NAN}, "max_tokens"),
    ("extra NaN", {"frequency_penalty": NAN}, "frequency_penalty"),
    ("stream_options array", {"stream": True, "stream_options": []}, "stream_options"),
]
OLLAMA_BAD = [
    *BAD,
    ("temperature NaN", {"options": {"temperature": NAN}}, "options.temperature"),
    ("num_predict NaN", {"options": {"num_predict": NAN}}, "options.num_predict"),
    ("top_k NaN", {"options": {"top_k": NAN}}, "options.top_k"),
    ("stream number", {"stream": 1}, "stream"),
]
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("case", "fields", "name"), OPENAI_BAD, ids=[b[0] for b in OPENAI_BAD])
async def test_openai_face_rejects_bad_fields_naming_them(
    conductor: Conductor, case: str, fields: dict[str, Any], name: str
) -> None:
    """/v1/chat/completions: 400 in OpenAI's shape, ``param`` and message name the field."""
    body = {"model": "demi", "messages": HI, **fields}
    resp = await conductor.client.post("/v1/chat/completions", json=body)
    assert resp.status == 400, case
    err = (await resp.json())["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    assert err["param"] == name and err["message"].startswith(name), err


@pytest.mark.parametrize(("case", "fields", "name"), OLLAMA_BAD, ids=[b[0] for b in OLLAMA_BAD])
@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_ollama_face_rejects_bad_fields_naming_them(
    conductor: Conductor, case: str, fields: dict[str, Any], name: str, path: str
) -> None:
    """/api/chat and /api/generate: 400 ``{"error": "<field> must be ..."}``."""
    if path == "/api/generate" and name.startswith("messages"):
        fields, name = {"prompt": {"x": 1}}, "prompt"
    body = {"model": "demi", "messages": HI, "prompt": "hi", **fields}
    resp = await conductor.client.post(path, json=body)
    assert resp.status == 400, case
    payload = await resp.json()
    assert set(payload) == {"error"}
    assert payload["error"].startswith(name), payload


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
FIELDS = ["model", "messages", "stream", "stream_options", "temperature", "max_tokens", "stop",
          "options", "prompt", "system", "images", "n", "top_p", "role", "content"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5),
       st.sampled_from([ChatCompletionBody, ChatBody, GenerateBody]))
def test_any_json_body_validates_or_is_an_api_error(data: dict[str, Any], model: type) -> None:
    """Whatever JSON arrives, validation either succeeds or raises a 4xx ApiError."""
    try:
        validate(data, model)
    except ApiError as exc:
        assert 400 <= exc.status < 500
