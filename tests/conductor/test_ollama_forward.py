"""Ollama-only calls through the conductor, forwarded by the Ollama provider: progress
streamed as Ollama writes it, a cut answer ending with an error line, a 502 naming Ollama
when it is unreachable, and preload/unload answered locally then."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import Conductor, ndjson
from tests.conftest import dead_url
from tests.raw_upstream import NDJSON_HEAD, RawUpstream, chunk, small

pytestmark = pytest.mark.timeout(60)


async def test_pull_progress_is_streamed_through(conductor: Conductor) -> None:
    """A pull answers with Ollama's status, content type and every progress line."""
    resp = await conductor.client.post("/api/pull", json={"model": "qwen3:0.6b"})
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    lines = ndjson(await resp.text())
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}


async def test_ollamas_own_error_status_comes_back(conductor: Conductor) -> None:
    """Deleting a model Ollama does not have is Ollama's 404, passed on as it is."""
    resp = await conductor.client.delete("/api/delete", json={"model": "absent:1b"})
    assert resp.status == 404
    assert await resp.json() == {"error": "model 'absent:1b' not found"}


async def test_management_with_ollama_down_is_a_502_naming_ollama(
    make_conductor: MakeConductor,
) -> None:
    """Nothing at Ollama's address: 502 saying Ollama at that URL is not reachable, and why."""
    url = dead_url()
    c = await make_conductor(llm={"ollama": {"base_url": url}})
    resp = await c.client.post("/api/pull", json={"model": "qwen3:0.6b"})
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error.startswith(f"Ollama at {url} is not reachable (Connection refused): /api/pull")
    assert "ollama serve" in error


@pytest.mark.parametrize(("path", "body", "reason"), [
    ("/api/generate", {"model": "demi"}, "load"),
    ("/api/chat", {"model": "demi", "messages": [], "keep_alive": 0}, "unload"),
])
async def test_preload_and_unload_with_ollama_down_are_answered_locally(
    make_conductor: MakeConductor, path: str, body: dict[str, object], reason: str,
) -> None:
    """Ollama down: a preload or unload hint is answered as Ollama would answer it."""
    c = await make_conductor(llm={"ollama": {"base_url": dead_url()}})
    resp = await c.client.post(path, json=body)
    assert resp.status == 200
    got = await resp.json()
    assert got["done"] is True and got["done_reason"] == reason


async def test_a_pull_cut_half_way_ends_with_an_error_line(
    make_conductor: MakeConductor,
) -> None:
    """Ollama gone mid-pull: the lines that came are passed on, then Ollama's error line."""
    async def answer(method: str, path: str, reader: object, writer: asyncio.StreamWriter
                     ) -> bool:
        if path != "/api/pull":
            writer.write(small(404, b'{"error":"not here"}'))
            await writer.drain()
            return True
        writer.write(NDJSON_HEAD + chunk(b'{"status":"pulling manifest"}\n'))
        await writer.drain()
        return False  # closed without the last chunk

    async with RawUpstream(answer) as up:
        c = await make_conductor(llm={"ollama": {"base_url": up.url}})
        resp = await c.client.post("/api/pull", json={"model": "qwen3:0.6b"})
        text = await resp.text()
    assert resp.status == 200
    assert [json.loads(line) for line in text.splitlines()] == [
        {"status": "pulling manifest"}, {"error": "Ollama closed the connection"}]
