"""The OpenAI-compatible endpoints, in process, against the fake upstreams."""

from __future__ import annotations

import asyncio
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
    sse_events,
    sse_json,
    upstream_chats,
)
from tests.waiting import wait_until

CHAT = "/v1/chat/completions"


def assert_openai_error(body: dict[str, Any], fragment: str) -> None:
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert fragment in err["message"], err["message"]


async def still_serving(c: Conductor) -> None:
    resp = await c.chat()
    assert resp.status == 200
    assert (await resp.json())["choices"][0]["message"]["content"] == OLLAMA_REPLY


async def test_non_streaming_reply_is_shaped_like_openai(conductor: Conductor) -> None:
    """A non-streaming chat returns OpenAI's chat.completion object, usage and the real model."""
    resp = await conductor.chat()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == OLLAMA_MODEL
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": OLLAMA_REPLY,
                                 "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_reply_headers_name_the_provider(conductor: Conductor) -> None:
    """X-DEMI-Provider and X-DEMI-Fallback say who answered."""
    resp = await conductor.chat()
    assert resp.headers["X-DEMI-Provider"] == "ollama"
    assert resp.headers["X-DEMI-Fallback"] == "false"


async def test_request_fields_are_mapped_and_model_is_not_passed_down(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """temperature/max_tokens/stop/top_p/seed reach Ollama's options; the alias does not."""
    resp = await conductor.chat(temperature=0.2, max_tokens=7, stop=["\n"], top_p=0.5, seed=42,
                                user="someone")
    assert resp.status == 200
    [req] = upstream_chats(fake_ollama)
    sent = req["json"]
    assert sent["model"] == OLLAMA_MODEL
    opts = sent["options"]
    assert opts["temperature"] == 0.2
    assert opts["num_predict"] == 7
    assert opts["stop"] == ["\n"]
    assert opts["top_p"] == 0.5
    assert opts["seed"] == 42
    assert "user" not in opts


async def test_max_completion_tokens_limits_the_reply(conductor: Conductor) -> None:
    """max_completion_tokens becomes the token limit, and a cut reply says finish_reason length."""
    resp = await conductor.chat(max_completion_tokens=1)
    body = await resp.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "Hello"


async def test_configured_model_name_routes_like_the_alias(conductor: Conductor) -> None:
    """Asking for the configured Ollama model name goes through the chain like 'demi'."""
    resp = await conductor.chat(model=OLLAMA_MODEL)
    assert resp.status == 200
    assert resp.headers["X-DEMI-Provider"] == "ollama"


async def test_streaming_follows_the_protocol(conductor: Conductor) -> None:
    """SSE: role chunk, content chunks, finish chunk, [DONE]; same id/created; no usage unasked."""
    resp = await conductor.chat(stream=True)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-DEMI-Provider"] == "ollama"
    text = await resp.text()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = sse_json(text)
    assert {(c["id"], c["created"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], chunks[0]["created"], OLLAMA_MODEL)
    }
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                                "refusal": None}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1])
    assert content == OLLAMA_REPLY
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert all("usage" not in c for c in chunks)


async def test_streaming_usage_chunk_only_when_asked(conductor: Conductor) -> None:
    """stream_options.include_usage adds one usage chunk with empty choices before [DONE]."""
    resp = await conductor.chat(stream=True, stream_options={"include_usage": True})
    chunks = sse_json(await resp.text())
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_models_lists_aliases_and_configured_models(conductor: Conductor) -> None:
    """GET /v1/models lists 'demi' and the configured Ollama model in OpenAI's list shape."""
    resp = await conductor.client.get("/v1/models")
    body = await resp.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["demi", OLLAMA_MODEL]
    assert all(m["object"] == "model" for m in body["data"])


async def test_unknown_model_is_404_model_not_found(conductor: Conductor) -> None:
    """An unknown model gets OpenAI's model_not_found error, not an answer from another model."""
    resp = await conductor.chat(model="gpt-4o")
    assert resp.status == 404
    body = await resp.json()
    assert_openai_error(body, "gpt-4o")
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "model"
    assert body["error"]["code"] == "model_not_found"
    await still_serving(conductor)


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing model", {"messages": HI}, "model is required"),
    ("model not a string", {"model": 5, "messages": HI}, "model must be a string"),
    ("missing messages", {"model": "demi"}, "messages is required"),
    ("messages not a list", {"model": "demi", "messages": "hi"}, "messages must be an array"),
    ("empty messages", {"model": "demi", "messages": []}, "must not be empty"),
    ("unknown role", {"model": "demi", "messages": [{"role": "robot", "content": "x"}]},
     "role is 'robot'"),
    ("message not an object", {"model": "demi", "messages": ["hi"]}, "messages[0]"),
    ("content not text", {"model": "demi", "messages": [{"role": "user", "content": 5}]},
     "content must be a string"),
    ("stream not a bool", {"model": "demi", "messages": HI, "stream": "yes"},
     "stream must be true or false"),
    ("temperature not a number", {"model": "demi", "messages": HI, "temperature": "hot"},
     "temperature must be a number"),
    ("temperature out of range", {"model": "demi", "messages": HI, "temperature": 9},
     "out of range"),
    ("max_tokens zero", {"model": "demi", "messages": HI, "max_tokens": 0},
     "max_tokens must be a positive integer"),
    ("max_completion_tokens text", {"model": "demi", "messages": HI,
                                    "max_completion_tokens": "10"},
     "max_completion_tokens must be a positive integer"),
    ("stop not strings", {"model": "demi", "messages": HI, "stop": [1]}, "stop must be"),
    ("n above one", {"model": "demi", "messages": HI, "n": 2}, "n must be 1"),
    ("top_p text", {"model": "demi", "messages": HI, "top_p": "x"}, "top_p must be a number"),
    ("stream_options not an object", {"model": "demi", "messages": HI, "stream": True,
                                      "stream_options": 1}, "stream_options must be an object"),
    ("tools not a list", {"model": "demi", "messages": HI, "tools": {"type": "function"}},
     "tools must be an array"),
    ("tool without a function", {"model": "demi", "messages": HI,
                                 "tools": [{"type": "function"}]}, "tools must be an array"),
    ("tool_choice a number", {"model": "demi", "messages": HI, "tool_choice": 3},
     "tool_choice must be"),
    ("response_format unknown type", {"model": "demi", "messages": HI,
                                      "response_format": {"type": "xml"}},
     "response_format must be"),
    ("deprecated functions", {"model": "demi", "messages": HI, "functions": [{"name": "f"}]},
     "send tools and tool_choice"),
    ("role an object", {"model": "demi", "messages": [{"role": {"x": 1}, "content": "x"}]},
     "role must be a string"),
    ("role an array", {"model": "demi", "messages": [{"role": ["user"], "content": "x"}]},
     "role must be a string"),
    ("image url not base64", {"model": "demi", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]},
     "base64 data: URL"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_input_is_a_400_in_openai_shape(
    conductor: Conductor, case: str, body: dict[str, Any], fragment: str
) -> None:
    """Each malformed field gets a 400 OpenAI error saying what is wrong; service keeps going."""
    resp = await conductor.client.post(CHAT, json=body)
    assert resp.status == 400, case
    assert_openai_error(await resp.json(), fragment)
    await still_serving(conductor)


RAW_BODIES = [
    ("invalid json", b'{"model": "demi", "messages": [', "not valid JSON"),
    ("not utf-8", b"\xff\xfe\x00garbage", "not valid JSON"),
    ("json array", b'[{"model": "demi"}]', "must be a JSON object"),
    ("json string", b'"hello"', "must be a JSON object"),
    ("empty body", b"", "body is empty"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize(("case", "raw", "fragment"), RAW_BODIES, ids=[b[0] for b in RAW_BODIES])
async def test_unparseable_body_is_a_400(
    make_conductor: Any, case: str, raw: bytes, fragment: str
) -> None:
    """Garbage bodies are a 400 with the reason in OpenAI's shape, never a crash."""
    c = await make_conductor(conductor={"max_body_bytes": 1_000_000})
    resp = await c.client.post(CHAT, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400, case
    assert_openai_error(await resp.json(), fragment)
    await still_serving(c)


async def test_body_over_the_limit_is_413(conductor: Conductor) -> None:
    """A body over conductor.max_body_bytes gets 413 in OpenAI's shape."""
    big = [{"role": "user", "content": "x" * 5000}]
    resp = await conductor.chat(messages=big)
    assert resp.status == 413
    body = await resp.json()
    assert_openai_error(body, "max_body_bytes")
    await still_serving(conductor)


async def test_chunked_body_over_the_limit_is_413(conductor: Conductor) -> None:
    """A body with no Content-Length that grows past the limit is also a 413."""

    async def gen() -> Any:
        yield b'{"model": "demi", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    resp = await conductor.client.post(CHAT, data=gen(),
                                       headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert_openai_error(await resp.json(), "max_body_bytes")
    await still_serving(conductor)


async def test_wrong_method_and_unknown_path_use_openai_shape(conductor: Conductor) -> None:
    """405 and 404 under /v1 come back as OpenAI error objects."""
    resp = await conductor.client.get(CHAT)
    assert resp.status == 405
    assert_openai_error(await resp.json(), "not allowed")
    resp = await conductor.client.post("/v1/audio/speech", json={})
    assert resp.status == 404
    assert_openai_error(await resp.json(), "no such endpoint")


async def test_fallback_reply_names_lmstudio_and_its_model(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """When Ollama fails, LM Studio answers and the reply says so (header and model)."""
    fake_ollama.control(mode="status", status=500)
    resp = await conductor.chat()
    assert resp.status == 200
    assert resp.headers["X-DEMI-Provider"] == "lmstudio"
    assert resp.headers["X-DEMI-Fallback"] == "true"
    body = await resp.json()
    assert body["model"] == LMSTUDIO_MODEL
    assert body["choices"][0]["message"]["content"] == LMSTUDIO_REPLY


async def test_all_providers_failing_is_503_with_the_guides_text(
    conductor: Conductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Every provider failing gives 503 whose message is AllProvidersFailed's text."""
    fake_ollama.control(mode="status", status=500)
    fake_lmstudio.control(mode="status", status=500)
    resp = await conductor.chat()
    assert resp.status == 503
    err = (await resp.json())["error"]
    assert err["message"].startswith("Both Ollama and LMStudio providers failed")
    assert err["code"] == "all_providers_failed"


async def test_stream_failing_before_first_token_is_an_http_error(
    conductor: Conductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """A stream that cannot start anywhere is a plain 503, not a 200 with an empty stream."""
    fake_ollama.kill()
    fake_lmstudio.kill()
    resp = await conductor.chat(stream=True)
    assert resp.status == 503
    assert resp.headers["Content-Type"].startswith("application/json")
    err = (await resp.json())["error"]
    assert err["message"].startswith("Both Ollama and LMStudio providers failed")


@pytest.mark.parametrize("mode", ["cut", "midstream_error"])
async def test_stream_broken_after_text_ends_with_an_error_event(
    make_conductor: MakeConductor, fake_ollama: FakeServer, mode: str
) -> None:
    """mid_stream: error: a stream broken after text ends with data: {"error": ...}, no [DONE]."""
    conductor = await make_conductor(llm={"mid_stream": "error"})
    fake_ollama.control(mode=mode, after_chunks=2)
    resp = await conductor.chat(stream=True)
    assert resp.status == 200
    text = await resp.text()
    events = sse_events(text)
    assert "[DONE]" not in events
    chunks = sse_json(text)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]
                   if c.get("choices")) == "Hello from"
    err = chunks[-1]["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "broke after" in err["message"]
    assert all(c["choices"][0].get("finish_reason") is None for c in chunks[:-1])
    await wait_until(lambda: conductor.state.in_flight == 0, "the stream handler to finish")
    # The same pooled connection serves the next request (Ollama's circuit is open now).
    assert (await conductor.chat()).status == 200


async def test_non_streaming_reply_broken_midway_is_asked_again(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """A whole-reply request whose provider breaks midway is answered whole by the next one."""
    fake_ollama.control(mode="cut", after_chunks=2)
    resp = await conductor.chat()
    assert resp.status == 200
    assert resp.headers["X-DEMI-Provider"] == "lmstudio"
    body = await resp.json()
    assert body["choices"][0]["message"]["content"] == LMSTUDIO_REPLY


async def test_client_disconnect_mid_stream_ends_the_handler(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """A client leaving mid-stream ends the handler and its upstream stream; DEMI keeps serving."""
    fake_ollama.control(chunk_delay=0.3, reply="one two three four five six seven eight")
    resp = await conductor.chat(stream=True)
    first = await resp.content.readline()
    assert first.startswith(b"data: ")
    resp.close()
    await wait_until(lambda: conductor.state.in_flight == 0, "the stream handler to finish")
    fake_ollama.reset()
    await still_serving(conductor)


async def test_single_model_lookup(conductor: Conductor) -> None:
    """GET /v1/models/{id} returns the model object, or 404 model_not_found."""
    resp = await conductor.client.get(f"/v1/models/{OLLAMA_MODEL}")
    assert (await resp.json())["id"] == OLLAMA_MODEL
    resp = await conductor.client.get("/v1/models/gpt-4o")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"


async def test_developer_role_and_text_parts_are_understood(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """OpenAI's 'developer' role becomes 'system'; text-part arrays become one string."""
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                     {"type": "text", "text": "there"}]},
    ]
    resp = await conductor.chat(messages=messages)
    assert resp.status == 200
    [req] = upstream_chats(fake_ollama)
    assert req["json"]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello\nthere"}]


async def test_client_disconnect_while_waiting_ends_the_request(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """A client that gives up before the first token cancels the request; DEMI keeps serving."""
    fake_ollama.control(first_token_delay=30, times=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await conductor.chat()
    await wait_until(lambda: conductor.state.in_flight == 0, "the cancelled handler to finish")
    await still_serving(conductor)
