"""Self-checks of the fake Ollama against the real ``ollama`` client and raw HTTP.

These pin the wire behaviour other tests rely on: if a check here fails, the fake (not DEMI) is
wrong.  No assertion depends on an upper timing bound; hang tests use short client timeouts.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import httpx
import ollama
import openai
import pytest

from src.testing.fakes.launcher import FakeServer

pytestmark = pytest.mark.timeout(60)
MODEL = "llama3.2:1b"
HI = [{"role": "user", "content": "Say hello in three words, please."}]  # 34 chars -> 4 + 8 = 12


def client(server: FakeServer, timeout: float = 5.0) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=server.url, timeout=timeout)


async def raw_post(server: FakeServer, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, json=body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.asyncio
async def test_root_head_version_tags_ps(fake_ollama: FakeServer) -> None:
    """Probe routes answer like Ollama: plain-text root (GET and HEAD), version, tags, ps."""
    async with aiohttp.ClientSession() as session:
        async with session.get(fake_ollama.url + "/") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert await resp.text() == "Ollama is running"
        async with session.head(fake_ollama.url + "/") as resp:
            assert resp.status == 200
        async with session.get(fake_ollama.url + "/api/version") as resp:
            assert "version" in await resp.json()
    async with client(fake_ollama) as c:
        listed = await c.list()
        assert [m.model for m in listed.models] == [MODEL]
        assert listed.models[0].details is not None and listed.models[0].details.family == "llama"
        assert (await c.ps()).models == []
        await c.chat(model=MODEL, messages=HI)
        assert [m.model for m in (await c.ps()).models] == [MODEL]


@pytest.mark.asyncio
async def test_chat_streams_word_tokens_with_final_stats(fake_ollama: FakeServer) -> None:
    """Streaming chat: a chunk per word, then done=true with stop reason, counts, ns durations."""
    async with client(fake_ollama) as c:
        parts = [p async for p in await c.chat(model=MODEL, messages=HI, stream=True)]
    assert [p.message.content for p in parts[:-1]] == ["Hello", " from", " fake-ollama."]
    assert all(not p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done and last.done_reason == "stop" and last.message.content == ""
    assert last.eval_count == 3 and last.prompt_eval_count == 12
    assert last.total_duration is not None and last.total_duration > 0


@pytest.mark.asyncio
async def test_stream_absent_means_ndjson_and_false_means_one_object(
    fake_ollama: FakeServer,
) -> None:
    """`stream` absent streams NDJSON; only `"stream": false` returns a single JSON object."""
    status, headers, body = await raw_post(
        fake_ollama, "/api/chat", {"model": MODEL, "messages": HI}
    )
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == 4 and lines[-1]["done"] is True
    status, headers, body = await raw_post(
        fake_ollama, "/api/chat", {"model": MODEL, "messages": HI, "stream": False}
    )
    assert headers["Content-Type"].startswith("application/json")
    whole = json.loads(body)
    assert whole["message"]["content"] == "Hello from fake-ollama." and whole["eval_count"] == 3


@pytest.mark.asyncio
async def test_generate_uses_response_field(fake_ollama: FakeServer) -> None:
    """/api/generate streams `response` pieces and returns the whole text when not streaming."""
    async with client(fake_ollama) as c:
        parts = [p async for p in await c.generate(model=MODEL, prompt="Hi", stream=True)]
        whole = await c.generate(model=MODEL, prompt="Hi", system="Be brief")
    assert "".join(p.response for p in parts) == "Hello from fake-ollama."
    assert whole.response == "Hello from fake-ollama." and whole.done_reason == "stop"
    assert whole.prompt_eval_count == 4 + len("Be briefHi") // 4


@pytest.mark.asyncio
async def test_num_predict_caps_reply_with_length_reason(fake_ollama: FakeServer) -> None:
    """options.num_predict truncates the reply and sets done_reason=length."""
    async with client(fake_ollama) as c:
        resp = await c.chat(model=MODEL, messages=HI, options={"num_predict": 2})
    assert (
        resp.message.content == "Hello from"
        and resp.done_reason == "length"
        and resp.eval_count == 2
    )


@pytest.mark.asyncio
async def test_reply_and_reply_tokens_controls(fake_ollama: FakeServer) -> None:
    """`reply` replaces the text; `reply_tokens` gives a fixed-length reply."""
    fake_ollama.control(reply="Bonjour le monde")
    async with client(fake_ollama) as c:
        parts = [
            p.message.content async for p in await c.chat(model=MODEL, messages=HI, stream=True)
        ]
        assert parts[:-1] == ["Bonjour", " le", " monde"]
        fake_ollama.control(reply_tokens=32)
        resp = await c.chat(model=MODEL, messages=HI)
    assert resp.eval_count == 32 and len(resp.message.content.split()) == 32


@pytest.mark.asyncio
async def test_missing_model_is_400_and_unknown_model_404(fake_ollama: FakeServer) -> None:
    """Ollama's errors: 400 `model is required`, 404 `model 'x' not found` (also for empty list)."""
    status, _, body = await raw_post(fake_ollama, "/api/chat", {"messages": HI})
    assert status == 400 and json.loads(body) == {"error": "model is required"}
    async with client(fake_ollama) as c:
        with pytest.raises(ollama.ResponseError) as err:
            await c.chat(model="nope:7b", messages=HI)
        assert err.value.status_code == 404 and err.value.error == "model 'nope:7b' not found"
        fake_ollama.control(models=[])
        assert (await c.list()).models == []
        with pytest.raises(ollama.ResponseError) as err:
            await c.chat(model=MODEL, messages=HI)
        assert err.value.status_code == 404


@pytest.mark.asyncio
async def test_empty_messages_only_loads_the_model(fake_ollama: FakeServer) -> None:
    """A chat without messages answers one done object with done_reason=load, like Ollama."""
    status, _, body = await raw_post(fake_ollama, "/api/chat", {"model": MODEL})
    assert status == 200 and json.loads(body)["done_reason"] == "load"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "text"),
    [
        (503, "server busy, please try again.  maximum pending requests exceeded"),
        (404, f"model '{MODEL}' not found"),
        (429, "too many requests, please try again later"),
        (500, "llama runner process has terminated: exit status 2"),
    ],
)
async def test_status_mode_uses_ollama_error_shape(
    fake_ollama: FakeServer, code: int, text: str
) -> None:
    """mode=status answers the code with Ollama's `{"error": ...}` body and a Retry-After header."""
    fake_ollama.control(mode="status", status=code, retry_after=2)
    async with client(fake_ollama) as c:
        with pytest.raises(ollama.ResponseError) as err:
            await c.chat(model=MODEL, messages=HI)
        assert err.value.status_code == code and err.value.error == text
        with pytest.raises(
            ollama.ResponseError
        ) as err:  # streaming: the error surfaces in `async for`
            [p async for p in await c.chat(model=MODEL, messages=HI, stream=True)]
        assert err.value.status_code == code
    status, headers, _ = await raw_post(fake_ollama, "/api/chat", {"model": MODEL, "messages": HI})
    assert status == code and headers["Retry-After"] == "2"


@pytest.mark.asyncio
async def test_midstream_error_is_last_ndjson_line_with_200(fake_ollama: FakeServer) -> None:
    """midstream_error: N good chunks, then an `{"error":...}` line on a 200 response."""
    fake_ollama.control(mode="midstream_error", after_chunks=2)
    got: list[str] = []
    async with client(fake_ollama) as c:
        with pytest.raises(ollama.ResponseError) as err:
            async for p in await c.chat(model=MODEL, messages=HI, stream=True):
                got.append(p.message.content)
    assert got == ["Hello", " from"] and err.value.status_code == -1
    status, _, body = await raw_post(fake_ollama, "/api/chat", {"model": MODEL, "messages": HI})
    assert status == 200 and json.loads(body.decode().splitlines()[-1]) == {
        "error": "an error was encountered while running the model: unexpected EOF"
    }


@pytest.mark.asyncio
async def test_cut_closes_connection_mid_stream(fake_ollama: FakeServer) -> None:
    """cut: after N chunks the TCP connection closes without the final chunk."""
    fake_ollama.control(mode="cut", after_chunks=1)
    got: list[str] = []
    async with client(fake_ollama) as c:
        with pytest.raises(httpx.TransportError):
            async for p in await c.chat(model=MODEL, messages=HI, stream=True):
                got.append(p.message.content)
        assert got == ["Hello"]
        with pytest.raises(httpx.TransportError):  # non-streaming: headers + half a body
            await c.chat(model=MODEL, messages=HI)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(
                fake_ollama.url + "/api/chat", json={"model": MODEL, "messages": HI}
            ) as resp:
                await resp.read()


@pytest.mark.asyncio
async def test_malformed_line_and_body(fake_ollama: FakeServer) -> None:
    """malformed: N good NDJSON lines then invalid JSON; non-streaming body is not JSON."""
    fake_ollama.control(mode="malformed", after_chunks=1)
    got: list[str] = []
    async with client(fake_ollama) as c:
        with pytest.raises(json.JSONDecodeError):
            async for p in await c.chat(model=MODEL, messages=HI, stream=True):
                got.append(p.message.content)
        assert got == ["Hello"]
        with pytest.raises(json.JSONDecodeError):
            await c.chat(model=MODEL, messages=HI)


@pytest.mark.asyncio
async def test_hang_accepts_and_never_answers(fake_ollama: FakeServer) -> None:
    """hang: the request is accepted but nothing comes back; a short client timeout fires."""
    fake_ollama.control(mode="hang")
    async with client(fake_ollama, timeout=0.5) as c:
        with pytest.raises(httpx.TimeoutException):
            await c.chat(model=MODEL, messages=HI)
        fake_ollama.control(after_chunks=1)  # hang after one chunk: headers and "Hello" arrive
        got: list[str] = []
        with pytest.raises(httpx.TimeoutException):
            async for p in await c.chat(model=MODEL, messages=HI, stream=True):
                got.append(p.message.content)
        assert got == ["Hello"]
    assert fake_ollama.config()["behaviour"]["mode"] == "hang"  # server itself still responsive


@pytest.mark.asyncio
async def test_loading_delays_first_token_and_reports_load_duration(
    fake_ollama: FakeServer,
) -> None:
    """loading (Ollama): no error, the first token is late and load_duration accounts for it."""
    fake_ollama.control(mode="loading", first_token_delay=0.3)
    async with client(fake_ollama) as c:
        started = time.monotonic()
        resp = await c.chat(model=MODEL, messages=HI)
    assert time.monotonic() - started >= 0.25
    assert (
        resp.message.content == "Hello from fake-ollama."
        and (resp.load_duration or 0) >= 250_000_000
    )


@pytest.mark.asyncio
async def test_chunk_delay_spaces_out_chunks(fake_ollama: FakeServer) -> None:
    """chunk_delay applies between streamed chunks even in ok mode."""
    fake_ollama.control(chunk_delay=0.1)
    stamps: list[float] = []
    async with client(fake_ollama) as c:
        async for _ in await c.chat(model=MODEL, messages=HI, stream=True):
            stamps.append(time.monotonic())
    assert len(stamps) == 4 and stamps[-1] - stamps[0] >= 0.25


@pytest.mark.asyncio
async def test_openai_compat_layer(fake_ollama: FakeServer) -> None:
    """Ollama's /v1 routes: OpenAI chat works, unknown model is 404, empty list has data=null."""
    async with openai.AsyncOpenAI(
        base_url=fake_ollama.url + "/v1", api_key="x", max_retries=0, timeout=5
    ) as oa:
        resp = await oa.chat.completions.create(model=MODEL, messages=HI)  # type: ignore[arg-type]
        assert resp.choices[0].message.content == "Hello from fake-ollama."
        assert resp.usage is not None and resp.usage.completion_tokens == 3
        with pytest.raises(openai.NotFoundError):
            await oa.chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]
    fake_ollama.control(models=[])
    async with aiohttp.ClientSession() as session, session.get(fake_ollama.url + "/v1/models") as r:
        assert (await r.json()) == {"object": "list", "data": None}
