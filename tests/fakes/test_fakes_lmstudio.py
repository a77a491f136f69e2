"""Self-checks of the fake LM Studio against the real ``openai`` client and raw HTTP.

They pin the OpenAI SSE framing of PROTOCOLS.md and LM Studio's model-selection quirks; no
assertion depends on an upper timing bound.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from src.testing.fakes.launcher import FakeServer

pytestmark = pytest.mark.timeout(60)
MODEL = "qwen2.5-7b-instruct"
HI: Any = [{"role": "user", "content": "Say hello in three words, please."}]  # 4 + 34 // 4 = 12


def client(server: FakeServer, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=timeout
    )


async def raw(
    server: FakeServer, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, json=body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def sse_events(body: bytes) -> list[str]:
    """Data payloads of an SSE body, in order."""
    return [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]


@pytest.mark.asyncio
async def test_model_lists_v1_and_native(fake_lmstudio: FakeServer) -> None:
    """/v1/models lists loaded ids; /api/v0/models adds state, type and max_context_length."""
    async with client(fake_lmstudio) as oa:
        assert [m.id async for m in oa.models.list()] == [MODEL]
    fake_lmstudio.control(models=[MODEL, "nomic-embed-text-v1.5"], loaded=[MODEL])
    _, _, body = await raw(fake_lmstudio, "GET", "/api/v0/models")
    data = {m["id"]: m for m in json.loads(body)["data"]}
    assert data[MODEL]["state"] == "loaded" and data[MODEL]["type"] == "llm"
    assert data["nomic-embed-text-v1.5"]["state"] == "not-loaded"
    assert (
        data["nomic-embed-text-v1.5"]["type"] == "embeddings"
        and data[MODEL]["max_context_length"] > 0
    )


@pytest.mark.asyncio
async def test_chat_non_streaming_with_usage(fake_lmstudio: FakeServer) -> None:
    """Non-streaming chat: whole reply, finish_reason=stop, deterministic usage."""
    async with client(fake_lmstudio) as oa:
        resp = await oa.chat.completions.create(model=MODEL, messages=HI)
    assert resp.choices[0].message.content == "Hello from fake-lmstudio."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (
        12,
        3,
    )


@pytest.mark.asyncio
async def test_sse_framing_matches_protocol(fake_lmstudio: FakeServer) -> None:
    """SSE: role, word and finish chunks, usage only on request, [DONE]; one id/created."""
    body_in = {
        "model": MODEL,
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, headers, body = await raw(fake_lmstudio, "POST", "/v1/chat/completions", body_in)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {(c["id"], c["created"]) for c in chunks} == {(chunks[0]["id"], chunks[0]["created"])}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == [
        "Hello",
        " from",
        " fake-lmstudio.",
    ]
    assert chunks[4]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[5]["choices"] == [] and chunks[5]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
    }
    body_in.pop("stream_options")
    _, _, body = await raw(fake_lmstudio, "POST", "/v1/chat/completions", body_in)
    assert not any("usage" in e for e in sse_events(body))


@pytest.mark.asyncio
async def test_streaming_with_client_and_max_tokens(fake_lmstudio: FakeServer) -> None:
    """The openai client assembles the stream; max_tokens caps it with finish_reason=length."""
    async with client(fake_lmstudio) as oa:
        stream = await oa.chat.completions.create(
            model=MODEL, messages=HI, stream=True, max_tokens=2
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from" and chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.asyncio
async def test_completions_and_v0_stats(fake_lmstudio: FakeServer) -> None:
    """/v1/completions answers text (whole and streamed); /api/v0/chat/completions adds stats."""
    async with client(fake_lmstudio) as oa:
        resp = await oa.completions.create(model=MODEL, prompt="Once upon")
        assert resp.choices[0].text == "Hello from fake-lmstudio."
        stream = await oa.completions.create(model=MODEL, prompt="Once upon", stream=True)
        assert "".join([c.choices[0].text async for c in stream]) == "Hello from fake-lmstudio."
    _, _, body = await raw(
        fake_lmstudio, "POST", "/api/v0/chat/completions", {"model": MODEL, "messages": HI}
    )
    assert json.loads(body)["stats"]["tokens_per_second"] > 0


@pytest.mark.asyncio
async def test_model_selection_quirks(fake_lmstudio: FakeServer) -> None:
    """One loaded model serves any name; none loaded is 400 `No models loaded`; several is 404."""
    async with client(fake_lmstudio) as oa:
        resp = await oa.chat.completions.create(model="llama-3.2-1b-instruct", messages=HI)
        assert resp.model == MODEL
        fake_lmstudio.control(loaded=[])
        with pytest.raises(openai.BadRequestError) as bad:
            await oa.chat.completions.create(model=MODEL, messages=HI)
        assert isinstance(bad.value.body, dict) and "No models loaded." in bad.value.body["message"]
        assert (bad.value.body["type"], bad.value.body["param"], bad.value.body["code"]) == (
            "invalid_request_error",
            "model",
            None,
        )
        fake_lmstudio.control(models=[MODEL, "b"], loaded=[MODEL, "b"])
        with pytest.raises(openai.NotFoundError):
            await oa.chat.completions.create(model="other", messages=HI)
        fake_lmstudio.control(loaded=[], jit=True)  # JIT: a downloaded model is loaded on demand
        assert (await oa.chat.completions.create(model="b", messages=HI)).model == "b"
    assert fake_lmstudio.config()["loaded"] == ["b"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "exc"),
    [
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (404, openai.NotFoundError),
    ],
)
async def test_status_mode_in_openai_shape(
    fake_lmstudio: FakeServer, code: int, exc: type[Exception]
) -> None:
    """mode=status answers the code with an OpenAI-shaped error and Retry-After."""
    fake_lmstudio.control(mode="status", status=code, retry_after=3)
    async with client(fake_lmstudio) as oa:
        with pytest.raises(exc):
            await oa.chat.completions.create(model=MODEL, messages=HI)
    status, headers, body = await raw(
        fake_lmstudio, "POST", "/v1/chat/completions", {"model": MODEL, "messages": HI}
    )
    assert status == code and headers["Retry-After"] == "3"
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


@pytest.mark.asyncio
async def test_string_error_shape(fake_lmstudio: FakeServer) -> None:
    """error_shape=string reproduces older builds' `{"error": "<text>"}`."""
    fake_lmstudio.control(mode="status", status=500, error_shape="string")
    _, _, body = await raw(
        fake_lmstudio, "POST", "/v1/chat/completions", {"model": MODEL, "messages": HI}
    )
    assert isinstance(json.loads(body)["error"], str)


@pytest.mark.asyncio
async def test_midstream_error_event(fake_lmstudio: FakeServer) -> None:
    """midstream_error: N chunks, then `data: {"error":{...}}`; the client raises APIError."""
    fake_lmstudio.control(mode="midstream_error", after_chunks=2)
    got: list[str] = []
    async with client(fake_lmstudio) as oa:
        with pytest.raises(openai.APIError) as err:
            async for c in await oa.chat.completions.create(model=MODEL, messages=HI, stream=True):
                got.append(c.choices[0].delta.content or "")
    assert got == ["", "Hello", " from"] and "crashed" in err.value.message


@pytest.mark.asyncio
async def test_cut_is_a_connection_error(fake_lmstudio: FakeServer) -> None:
    """cut: the stream stops without finish chunk or [DONE]; the client sees a connection error."""
    fake_lmstudio.control(mode="cut", after_chunks=1)
    got: list[str] = []
    async with client(fake_lmstudio) as oa:
        with pytest.raises(openai.APIConnectionError):
            async for c in await oa.chat.completions.create(model=MODEL, messages=HI, stream=True):
                got.append(c.choices[0].delta.content or "")
        assert got == ["", "Hello"]
        fake_lmstudio.control(after_chunks=0)  # non-streaming, 0 chunks: closed before any answer
        with pytest.raises(openai.APIConnectionError):
            await oa.chat.completions.create(model=MODEL, messages=HI)


@pytest.mark.asyncio
async def test_malformed_event_and_body(fake_lmstudio: FakeServer) -> None:
    """malformed: good chunks then a non-JSON event; a non-streaming body is not JSON."""
    fake_lmstudio.control(mode="malformed", after_chunks=1)
    async with client(fake_lmstudio) as oa:
        with pytest.raises(json.JSONDecodeError):
            async for _ in await oa.chat.completions.create(model=MODEL, messages=HI, stream=True):
                pass
        with pytest.raises(json.JSONDecodeError):
            await oa.chat.completions.create(model=MODEL, messages=HI)


@pytest.mark.asyncio
async def test_hang_times_out_on_the_client(fake_lmstudio: FakeServer) -> None:
    """hang: no answer at all; the openai client's short timeout raises APITimeoutError."""
    fake_lmstudio.control(mode="hang")
    async with client(fake_lmstudio, timeout=0.5) as oa:
        with pytest.raises(openai.APITimeoutError):
            await oa.chat.completions.create(model=MODEL, messages=HI)
        with pytest.raises(openai.APITimeoutError):
            await oa.chat.completions.create(model=MODEL, messages=HI, stream=True)


@pytest.mark.asyncio
async def test_loading_is_llamacpp_503_and_can_hit_health_routes(fake_lmstudio: FakeServer) -> None:
    """loading: 503 `Loading model` (unavailable_error), on /v1/models too with routes=all."""
    fake_lmstudio.control(mode="loading", routes="all")
    status, _, body = await raw(
        fake_lmstudio, "POST", "/v1/chat/completions", {"model": MODEL, "messages": HI}
    )
    assert status == 503 and json.loads(body) == {
        "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
    }
    async with client(fake_lmstudio) as oa:
        with pytest.raises(openai.InternalServerError):
            await oa.models.list()
