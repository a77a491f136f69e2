"""``OllamaInference.forward``: a raw request to the Ollama server over the provider's own
pooled session and error table, its answer streamed back chunk by chunk and the upstream
released on every exit, a cancellation included. Also Ollama's warm-up, which never raises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from src.llm import (
    OllamaInference,
    ProviderResponseError,
    ProviderUnavailable,
    UnifiedLLMInference,
)
from src.testing.fakes.launcher import FakeServer
from tests.conftest import MakeLLM, dead_url
from tests.raw_upstream import NDJSON_HEAD, RawUpstream, chunk, small, wait_for_hang_up

pytestmark = pytest.mark.timeout(60)
OllamaAt = Callable[[str], OllamaInference]


@pytest.fixture
async def ollama_at(make_llm: MakeLLM) -> AsyncIterator[OllamaAt]:
    """``ollama_at(url)``: the Ollama provider of an LLM configured for ``url`` (not started)."""
    made: list[UnifiedLLMInference] = []

    def provider(url: str) -> OllamaInference:
        llm = make_llm(url)
        made.append(llm)
        assert isinstance(llm.ollama, OllamaInference)
        return llm.ollama

    yield provider
    for llm in made:
        await llm.close()


async def test_forward_streams_ollamas_answer_as_it_is(
    ollama_at: OllamaAt, fake_ollama: FakeServer
) -> None:
    """A pull's status, content type and progress lines come back untouched."""
    provider = ollama_at(fake_ollama.url)
    async with provider.forward("POST", "/api/pull", b'{"model": "qwen3:0.6b"}') as answer:
        body = b"".join([piece async for piece in answer.body])
    lines = [json.loads(line) for line in body.splitlines()]
    assert (answer.status, answer.content_type) == (200, "application/x-ndjson")
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    assert fake_ollama.requests()[-1]["json"] == {"model": "qwen3:0.6b"}


async def test_forward_passes_ollamas_error_statuses_through(
    ollama_at: OllamaAt, fake_ollama: FakeServer
) -> None:
    """An error status is Ollama's answer, forwarded as it is, not a provider failure."""
    provider = ollama_at(fake_ollama.url)
    async with provider.forward("DELETE", "/api/delete", b'{"model": "absent:1b"}') as answer:
        body = b"".join([piece async for piece in answer.body])
    assert answer.status == 404 and json.loads(body) == {"error": "model 'absent:1b' not found"}


async def test_forward_to_nothing_is_provider_unavailable(ollama_at: OllamaAt) -> None:
    """Nothing listening: the provider's own mapping says so, with the guide's reason."""
    provider = ollama_at(dead_url())
    with pytest.raises(ProviderUnavailable) as info:
        async with provider.forward("POST", "/api/pull", b"{}"):
            pass
    assert info.value.reason == "Connection refused" and info.value.provider == "ollama"


async def test_forward_reuses_the_providers_pooled_connection(ollama_at: OllamaAt) -> None:
    """Forwarded requests ride the provider's pooled session: one connection for several."""
    async def answer(method: str, path: str, reader: object, writer: asyncio.StreamWriter
                     ) -> bool:
        writer.write(small(200))
        await writer.drain()
        return True

    async with RawUpstream(answer) as up:
        provider = ollama_at(up.url)
        for _ in range(3):
            async with provider.forward("POST", "/api/copy", b"{}") as got:
                assert [p async for p in got.body] == [b"{}"]
        assert up.connections == 1 and len(up.requests) == 3


async def test_forward_hands_on_each_chunk_as_it_arrives(ollama_at: OllamaAt) -> None:
    """The first progress line reaches the caller while Ollama still holds the second."""
    first_seen = asyncio.Event()

    async def answer(method: str, path: str, reader: object, writer: asyncio.StreamWriter
                     ) -> bool:
        writer.write(NDJSON_HEAD + chunk(b'{"status":"pulling manifest"}\n'))
        await writer.drain()
        await first_seen.wait()
        writer.write(chunk(b'{"status":"success"}\n') + chunk(b""))
        await writer.drain()
        return True

    async with RawUpstream(answer) as up:
        provider = ollama_at(up.url)
        async with provider.forward("POST", "/api/pull", b"{}") as got:
            pieces = aiter(got.body)
            assert await asyncio.wait_for(anext(pieces), 5) == b'{"status":"pulling manifest"}\n'
            first_seen.set()
            assert [p async for p in pieces] == [b'{"status":"success"}\n']


async def test_a_body_cut_half_way_raises_from_the_body(ollama_at: OllamaAt) -> None:
    """Ollama gone mid-answer: the read raises the provider's error, after what did arrive."""
    async def answer(method: str, path: str, reader: object, writer: asyncio.StreamWriter
                     ) -> bool:
        writer.write(NDJSON_HEAD + chunk(b'{"status":"pulling manifest"}\n'))
        await writer.drain()
        return False  # closed without the last chunk

    async with RawUpstream(answer) as up:
        provider = ollama_at(up.url)
        got_pieces: list[bytes] = []
        with pytest.raises(ProviderResponseError) as info:
            async with provider.forward("POST", "/api/pull", b"{}") as got:
                async for piece in got.body:
                    got_pieces.append(piece)
    assert got_pieces == [b'{"status":"pulling manifest"}\n']
    assert info.value.reason == "connection closed in the middle of the reply"


async def test_a_cancelled_forward_closes_the_upstream_and_stays_cancelled(
    ollama_at: OllamaAt,
) -> None:
    """Cancelled mid-body: CancelledError comes out, and Ollama sees the connection close."""
    async def answer(method: str, path: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bool:
        writer.write(NDJSON_HEAD + chunk(b'{"status":"pulling manifest"}\n'))
        await writer.drain()
        await wait_for_hang_up(reader, up)
        return False

    async with RawUpstream(answer) as up:
        provider = ollama_at(up.url)
        first = asyncio.Event()

        async def pull() -> None:
            async with provider.forward("POST", "/api/pull", b"{}") as got:
                async for _ in got.body:
                    first.set()

        task = asyncio.create_task(pull())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(up.client_left.wait(), 5)


async def test_ollama_warm_up_without_the_model_is_false_not_an_error(
    ollama_at: OllamaAt, fake_ollama: FakeServer
) -> None:
    """Ollama's 404 for a missing model makes warm() False; it never raises (standby loop)."""
    fake_ollama.control(models=[])
    provider = ollama_at(fake_ollama.url)
    assert await provider.warm(60) is False


async def test_ollama_warm_up_of_a_dead_server_is_false(ollama_at: OllamaAt) -> None:
    """Nothing listening: warm() is False."""
    assert await ollama_at(dead_url()).warm(60) is False
