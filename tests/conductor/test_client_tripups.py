"""What real clients tripped over, each fixed and pinned here (over HTTP, the fakes behind).

* instructor's TOOLS mode and pydantic-ai's ``output_type`` force a tool
  (``tool_choice: "required"`` or a named function). Ollama cannot force one; when no
  provider can, the request goes to Ollama without ``tool_choice``, as Ollama's own
  ``/v1`` would serve it, and the response says so (``X-DEMI-Degraded``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import ollama
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import OLLAMA_REPLY
from tests.conftest import dead_url

OLLAMA_WORDS = OLLAMA_REPLY.split()

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.mark.parametrize("choice", ["required", {"type": "function",
                                                 "function": {"name": "get_weather"}}])
async def test_a_forced_tool_on_an_ollama_only_setup_is_served_degraded(
    make_conductor: MakeConductor, fake_ollama: FakeServer,
    caplog: pytest.LogCaptureFixture, choice: object,
) -> None:
    """LM Studio down, tool_choice forced: Ollama answers with the tools offered and no
    tool_choice; the response names the field left out; a DEBUG line says why."""
    caplog.set_level(logging.DEBUG, logger="demi.llm")
    c = await make_conductor(llm={"lmstudio": {"base_url": dead_url()}})
    fake_ollama.clear_requests()
    for stream in (False, True):
        resp = await c.client.post("/v1/chat/completions", json={
            "model": "demi", "messages": ASK, "tools": WEATHER, "tool_choice": choice,
            "stream": stream})
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-DEMI-Provider"] == "ollama"
        assert resp.headers["X-DEMI-Degraded"] == "tool_choice"
        text = await resp.text()
        assert "get_weather" in text  # the fake model called the offered tool
    sent = [r["json"] for r in fake_ollama.requests() if r["path"] == "/api/chat"]
    assert sent and all("tool_choice" not in body for body in sent)
    assert all(body["tools"][0]["function"]["name"] == "get_weather" for body in sent)
    assert ("No provider can express tool_choice; Ollama serves the request without it "
            "(Ollama has no tool_choice other than auto)") in caplog.messages


async def test_a_degraded_reply_is_only_the_last_resort(make_conductor: MakeConductor) -> None:
    """With LM Studio up, a forced tool goes to LM Studio, which can force it: no header."""
    c = await make_conductor()
    resp = await c.client.post("/v1/chat/completions", json={
        "model": "demi", "messages": ASK, "tools": WEATHER, "tool_choice": "required"})
    assert resp.status == 200
    assert resp.headers["X-DEMI-Provider"] == "lmstudio"
    assert "X-DEMI-Degraded" not in resp.headers


async def test_a_request_nobody_can_serve_is_a_400_naming_each_reason(
    make_conductor: MakeConductor, fake_ollama: FakeServer,
) -> None:
    """Two Ollama-kind providers and an image by http URL (Ollama takes data only): a 400
    that names the field and each provider's reason, and no provider is blamed."""
    c = await make_conductor(llm={
        "order": ["ollama", "box"], "lmstudio": {"base_url": dead_url()},
        "providers": [{"name": "box", "kind": "ollama", "base_url": fake_ollama.url,
                       "model": "llama3.2:1b"}]})
    resp = await c.client.post("/v1/chat/completions", json={"model": "demi", "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert "is not supported by any provider in the chain" in error["message"]
    assert "Ollama: " in error["message"] and "box: " in error["message"], error
    assert "data: URLs" in error["message"]
    for name in ("ollama", "box"):
        assert c.llm.provider_status(name)["circuit"] == "closed"


async def test_refusal_is_null_as_the_spec_requires(make_conductor: MakeConductor) -> None:
    """OpenAI's spec requires ``refusal`` in the message (and the first stream delta)."""
    c = await make_conductor()
    resp = await c.client.post("/v1/chat/completions", json={"model": "demi", "messages": ASK})
    message = (await resp.json())["choices"][0]["message"]
    assert "refusal" in message and message["refusal"] is None
    stream = await c.client.post("/v1/chat/completions",
                                 json={"model": "demi", "messages": ASK, "stream": True})
    first = next(line for line in (await stream.text()).splitlines() if line.startswith("data"))
    delta = json.loads(first[5:])["choices"][0]["delta"]
    assert delta["role"] == "assistant" and "refusal" in delta and delta["refusal"] is None


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0].type",
     "custom tools"),
    ({"messages": [{"role": "function", "name": "f", "content": "42"}]}, "messages[0].role",
     "function"),
])
async def test_unsupported_tool_kinds_name_the_field(
    make_conductor: MakeConductor, body: dict[str, Any], field: str, words: str,
) -> None:
    """A custom tool and a role "function" message: a 400 naming the field and saying why."""
    c = await make_conductor()
    resp = await c.client.post("/v1/chat/completions",
                               json={"model": "demi", "messages": ASK, **body})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == field, error
    assert error["message"].startswith(field) and words in error["message"], error


async def test_blobs_are_forwarded_for_ollama_create(
    make_conductor: MakeConductor, fake_ollama: FakeServer,
) -> None:
    """``ollama create`` from a GGUF checks (HEAD) and uploads (POST) /api/blobs/:digest:
    both reach Ollama, the upload streamed through whatever its size."""
    c = await make_conductor()  # max_body_bytes is 4096 here: the blob is bigger
    data = os.urandom(64 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await c.client.head(f"/api/blobs/{digest}")).status == 404
    resp = await c.client.post(f"/api/blobs/{digest}", data=data,
                               headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 201, await resp.text()
    assert (await c.client.head(f"/api/blobs/{digest}")).status == 200
    wrong = await c.client.post(f"/api/blobs/sha256:{'0' * 64}", data=b"not it")
    assert wrong.status == 400 and "digest mismatch" in await wrong.text()


async def test_embedding_models_are_listed_with_their_capability(
    make_conductor: MakeConductor, fake_ollama: FakeServer,
) -> None:
    """llm-ollama lists /api/tags and reads /api/show's capabilities: the configured
    embedding model is there as an embedding model, and in /v1/models; a chat naming it
    gets Ollama's 400."""
    c = await make_conductor(llm={"ollama": {"embedding_model": "nomic-embed-text"}})
    fake_ollama.control(models=[*fake_ollama.config()["models"], "nomic-embed-text:latest"])
    try:
        async with ollama.AsyncClient(host=str(c.client.make_url(""))) as oll:
            names = [m.model for m in (await oll.list()).models]
            assert "nomic-embed-text" in names and "demi" in names
            assert "embedding" in ((await oll.show("nomic-embed-text")).capabilities or [])
            assert "completion" in ((await oll.show("demi")).capabilities or [])
            assert (await oll.embed("nomic-embed-text", "hello")).embeddings
            with pytest.raises(ollama.ResponseError, match="does not support chat"):
                await oll.chat("nomic-embed-text", messages=ASK)
    finally:
        fake_ollama.reset()
    listed = await (await c.client.get("/v1/models")).json()
    assert "nomic-embed-text" in [m["id"] for m in listed["data"]]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/embeddings", {"input": [[9906, 1917]]}, "input"),
    ("/v1/embeddings", {"input": [9906, 1917]}, "input"),
    ("/v1/completions", {"prompt": [9906, 1917]}, "prompt"),
])
async def test_token_id_input_says_how_to_send_text(
    make_conductor: MakeConductor, path: str, body: dict[str, Any], field: str,
) -> None:
    """langchain-openai's OpenAIEmbeddings sends token ids by default: the 400 says that
    token ids are not taken, and how to turn them off in that client."""
    c = await make_conductor(llm={"ollama": {"embedding_model": "nomic-embed-text"}})
    resp = await c.client.post(path, json={"model": "demi", **body})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["param"] == field
    assert error["message"].startswith(f"{field} is token ids")
    assert "check_embedding_ctx_length=False" in error["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_usage_is_an_estimate_when_the_server_reports_none(
    make_conductor: MakeConductor, fake_ollama: FakeServer, path: str,
) -> None:
    """A server that reports no token counts (llama.cpp's in streams): the reply carries
    DEMI's estimate, never a made-up zero; the server's own counts when it sends them."""
    c = await make_conductor()
    counts = []
    for usage in (False, True):
        fake_ollama.control(usage=usage)
        try:
            resp = await c.client.post(path, json={"model": "demi", "messages": ASK,
                                                   "stream": False})
            body = await resp.json()
        finally:
            fake_ollama.reset()
        if path == "/api/chat":
            counts.append((body["prompt_eval_count"], body["eval_count"]))
        else:
            counts.append((body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]))
    estimated, reported = counts
    assert all(n > 0 for n in estimated), estimated
    assert reported[1] == len(OLLAMA_WORDS)  # the fake counts one token per word
