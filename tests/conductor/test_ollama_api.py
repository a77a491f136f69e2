"""The Ollama-compatible endpoints, in process, against the fake upstreams."""

from __future__ import annotations

from typing import Any

import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import (
    HI,
    LMSTUDIO_MODEL,
    LMSTUDIO_REPLY,
    OLLAMA_MODEL,
    OLLAMA_REPLY,
    Conductor,
    ndjson,
    upstream_chats,
)

DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def assert_final(obj: dict[str, Any]) -> None:
    assert obj["done"] is True
    assert obj["done_reason"] == "stop"
    for key in DURATIONS:
        assert isinstance(obj[key], int) and obj[key] >= 0, key
    assert obj["total_duration"] >= obj["prompt_eval_duration"]
    assert isinstance(obj["prompt_eval_count"], int)
    assert obj["eval_count"] == 3


async def still_serving(c: Conductor) -> None:
    resp = await c.chat("/api/chat", stream=False)
    assert resp.status == 200
    assert (await resp.json())["message"]["content"] == OLLAMA_REPLY


async def test_chat_streams_ndjson_by_default(conductor: Conductor) -> None:
    """/api/chat without "stream" streams NDJSON ending in a done object with durations."""
    resp = await conductor.client.post("/api/chat", json={"model": "demi", "messages": HI})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert resp.headers["X-DEMI-Provider"] == "ollama"
    lines = ndjson(await resp.text())
    assert all(obj["model"] == OLLAMA_MODEL for obj in lines)
    assert all(obj["done"] is False for obj in lines[:-1])
    assert "".join(obj["message"]["content"] for obj in lines) == OLLAMA_REPLY
    assert all(obj["message"]["role"] == "assistant" for obj in lines)
    assert all(obj["created_at"].endswith("Z") for obj in lines)
    assert_final(lines[-1])


async def test_chat_stream_false_returns_one_object(conductor: Conductor) -> None:
    """"stream": false gives a single done object holding the whole reply."""
    resp = await conductor.chat("/api/chat", stream=False)
    assert resp.headers["Content-Type"].startswith("application/json")
    obj = await resp.json()
    assert obj["message"] == {"role": "assistant", "content": OLLAMA_REPLY}
    assert obj["model"] == OLLAMA_MODEL
    assert_final(obj)


async def test_generate_maps_prompt_and_system(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """/api/generate turns system+prompt into messages and answers in 'response'."""
    resp = await conductor.client.post("/api/generate", json={
        "model": "demi", "prompt": "Why?", "system": "Be brief.", "stream": False})
    obj = await resp.json()
    assert obj["response"] == OLLAMA_REPLY
    assert "message" not in obj
    assert_final(obj)
    [req] = upstream_chats(fake_ollama)
    assert [(m["role"], m["content"]) for m in req["json"]["messages"]] == [
        ("system", "Be brief."), ("user", "Why?")]


async def test_generate_streams_response_fields(conductor: Conductor) -> None:
    """Streaming /api/generate sends 'response' pieces and a done object."""
    resp = await conductor.client.post("/api/generate", json={"model": "demi", "prompt": "hi"})
    lines = ndjson(await resp.text())
    assert "".join(obj["response"] for obj in lines) == OLLAMA_REPLY
    assert_final(lines[-1])


async def test_options_are_mapped(conductor: Conductor, fake_ollama: FakeServer) -> None:
    """options.temperature/num_predict/stop map; other options such as top_k pass through."""
    resp = await conductor.chat("/api/chat", stream=False, options={
        "temperature": 0.1, "num_predict": 2, "stop": ["x"], "top_k": 5})
    obj = await resp.json()
    assert obj["done_reason"] == "length"
    assert obj["message"]["content"] == "Hello from"
    [req] = upstream_chats(fake_ollama)
    opts = req["json"]["options"]
    assert (opts["temperature"], opts["num_predict"], opts["stop"], opts["top_k"]) == (
        0.1, 2, ["x"], 5)
    assert req["json"]["model"] == OLLAMA_MODEL


async def test_unlimited_num_predict_sends_no_limit(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """num_predict -1 (Ollama's "no limit") is not forwarded as a limit."""
    resp = await conductor.chat("/api/chat", stream=False, options={"num_predict": -1})
    assert resp.status == 200
    [req] = upstream_chats(fake_ollama)
    assert "num_predict" not in req["json"]["options"]


async def test_tags_version_and_root(conductor: Conductor) -> None:
    """/api/tags lists the models in Ollama's shape; /api/version and / answer like Ollama."""
    tags = await (await conductor.client.get("/api/tags")).json()
    names = [m["name"] for m in tags["models"]]
    assert names == ["demi", OLLAMA_MODEL]
    for entry in tags["models"]:
        assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(entry)
    version = await (await conductor.client.get("/api/version")).json()
    assert isinstance(version["version"], str)
    root = await conductor.client.get("/")
    assert root.status == 200
    assert await root.text() == "Ollama is running"
    head = await conductor.client.head("/")
    assert head.status == 200


async def test_latest_tag_matches_untagged_alias(conductor: Conductor) -> None:
    """'demi:latest' is the same model as 'demi', as in Ollama."""
    resp = await conductor.chat("/api/chat", model="demi:latest", stream=False)
    assert resp.status == 200


async def test_unknown_model_is_404_in_ollama_shape(conductor: Conductor) -> None:
    """An unknown model gets Ollama's exact 404 text."""
    resp = await conductor.chat("/api/chat", model="mistral:7b")
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'mistral:7b' not found"}
    resp = await conductor.client.post("/api/generate", json={"model": "nope", "prompt": "x"})
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'nope' not found"}
    await still_serving(conductor)


BAD_CHAT: list[tuple[str, dict[str, Any], str]] = [
    ("missing model", {"messages": HI}, "model is required"),
    ("empty model", {"model": "", "messages": HI}, "model is required"),
    ("messages not a list", {"model": "demi", "messages": {"role": "user"}},
     "messages must be an array"),
    ("unknown role", {"model": "demi", "messages": [{"role": "bot", "content": "x"}]},
     "role is 'bot'"),
    ("preload without model", {"messages": []}, "model is required"),
    ("messages an object", {"model": "demi", "messages": {}}, "messages must be"),
    ("stream not a bool", {"model": "demi", "messages": HI, "stream": "no"},
     "stream must be true or false"),
    ("options not an object", {"model": "demi", "messages": HI, "options": [1]},
     "options must be an object"),
    ("num_predict text", {"model": "demi", "messages": HI, "options": {"num_predict": "9"}},
     "options.num_predict must be an integer"),
    ("temperature text", {"model": "demi", "messages": HI, "options": {"temperature": "1"}},
     "options.temperature must be a number"),
    ("stop not strings", {"model": "demi", "messages": HI, "options": {"stop": [3]}},
     "stop must be"),
    ("tools not a list", {"model": "demi", "messages": HI, "tools": {"type": "function"}},
     "tools must be an array"),
    ("tool without a function", {"model": "demi", "messages": HI,
                                 "tools": [{"type": "function"}]}, "tools must be an array"),
    ("role an object", {"model": "demi", "messages": [{"role": {"x": 1}, "content": "x"}]},
     "role must be a string"),
    ("role an array", {"model": "demi", "messages": [{"role": ["user"], "content": "x"}]},
     "role must be a string"),
    ("format not json", {"model": "demi", "messages": HI, "format": "xml"},
     "format must be"),
    ("image not base64", {"model": "demi", "messages": [
        {"role": "user", "content": "x", "images": ["/etc/passwd"]}]}, "not valid base64"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_CHAT, ids=[b[0] for b in BAD_CHAT])
async def test_bad_chat_input_is_a_400_in_ollama_shape(
    conductor: Conductor, case: str, body: dict[str, Any], fragment: str
) -> None:
    """Each malformed /api/chat body gets 400 {"error": "..."} naming the problem."""
    resp = await conductor.client.post("/api/chat", json=body)
    assert resp.status == 400, case
    payload = await resp.json()
    assert set(payload) == {"error"}
    assert fragment in payload["error"], payload["error"]
    await still_serving(conductor)


BAD_GENERATE: list[tuple[str, dict[str, Any], str]] = [
    ("missing model", {"prompt": "x"}, "model is required"),
    ("prompt not text", {"model": "demi", "prompt": ["x"]}, "prompt must be a string"),
    ("system not text", {"model": "demi", "prompt": "x", "system": 1},
     "system must be a string"),
    ("images not a list", {"model": "demi", "prompt": "x", "images": "abc"},
     "images must be an array"),
    ("raw prompt", {"model": "demi", "prompt": "x", "raw": True}, "raw is not supported"),
    ("suffix", {"model": "demi", "prompt": "x", "suffix": "y"}, "suffix is not supported"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_GENERATE,
                         ids=[b[0] for b in BAD_GENERATE])
async def test_bad_generate_input_is_a_400_in_ollama_shape(
    conductor: Conductor, case: str, body: dict[str, Any], fragment: str
) -> None:
    """Each malformed /api/generate body gets 400 {"error": "..."} naming the problem."""
    resp = await conductor.client.post("/api/generate", json=body)
    assert resp.status == 400, case
    payload = await resp.json()
    assert fragment in payload["error"], payload["error"]
    await still_serving(conductor)


@pytest.mark.parametrize("raw", [b"{nope", b"[]", b"", b"\x00\x01"])
async def test_unparseable_body_is_a_400_in_ollama_shape(conductor: Conductor, raw: bytes) -> None:
    """Garbage bodies on /api/chat are a 400 {"error": ...}, never a crash."""
    resp = await conductor.client.post("/api/chat", data=raw)
    assert resp.status == 400
    assert set(await resp.json()) == {"error"}
    await still_serving(conductor)


async def test_body_over_the_limit_is_413_in_ollama_shape(conductor: Conductor) -> None:
    """A body over conductor.max_body_bytes gets 413 {"error": ...}."""
    resp = await conductor.chat("/api/chat", messages=[{"role": "user", "content": "y" * 5000}])
    assert resp.status == 413
    assert "max_body_bytes" in (await resp.json())["error"]
    await still_serving(conductor)


async def test_wrong_method_is_405_in_ollama_shape(conductor: Conductor) -> None:
    """GET /api/chat is a 405 with Ollama's error shape."""
    resp = await conductor.client.get("/api/chat")
    assert resp.status == 405
    assert "not allowed" in (await resp.json())["error"]


async def test_fallback_reply_names_lmstudio(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """With Ollama down, /api/chat is answered by LM Studio and says so."""
    fake_ollama.kill()
    resp = await conductor.chat("/api/chat", stream=False)
    assert resp.headers["X-DEMI-Provider"] == "lmstudio"
    assert resp.headers["X-DEMI-Fallback"] == "true"
    obj = await resp.json()
    assert obj["model"] == LMSTUDIO_MODEL
    assert obj["message"]["content"] == LMSTUDIO_REPLY


async def test_all_failed_is_503_in_ollama_shape(
    conductor: Conductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Every provider down: streaming /api/chat is a 503 {"error": "Both Ollama and ..."}."""
    fake_ollama.kill()
    fake_lmstudio.kill()
    resp = await conductor.client.post("/api/chat", json={"model": "demi", "messages": HI})
    assert resp.status == 503
    assert (await resp.json())["error"].startswith("Both Ollama and LMStudio providers failed")


@pytest.mark.parametrize("mode", ["cut", "midstream_error"])
async def test_stream_broken_after_text_ends_with_an_error_line(
    make_conductor: MakeConductor, fake_ollama: FakeServer, mode: str
) -> None:
    """mid_stream: error: a broken stream keeps 200 and ends with {"error": ...}, no done."""
    conductor = await make_conductor(llm={"mid_stream": "error"})
    fake_ollama.control(mode=mode, after_chunks=2)
    resp = await conductor.client.post("/api/chat", json={"model": "demi", "messages": HI})
    assert resp.status == 200
    lines = ndjson(await resp.text())
    assert "".join(obj["message"]["content"] for obj in lines[:-1]) == "Hello from"
    assert all(obj.get("done") is False for obj in lines[:-1])
    assert set(lines[-1]) == {"error"}
    assert "broke after" in lines[-1]["error"]
    # The same pooled connection serves the next request (Ollama's circuit is open now).
    assert (await conductor.chat("/api/chat", stream=False)).status == 200


async def test_show_and_ps_answer_client_probes(conductor: Conductor) -> None:
    """/api/show describes a known model (404 otherwise); /api/ps lists nothing loaded."""
    resp = await conductor.client.post("/api/show", json={"model": "demi"})
    assert resp.status == 200
    assert "details" in await resp.json()
    resp = await conductor.client.post("/api/show", json={"name": OLLAMA_MODEL})
    assert resp.status == 200
    resp = await conductor.client.post("/api/show", json={"model": "nope"})
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'nope' not found"}
    assert await (await conductor.client.get("/api/ps")).json() == {"models": []}
