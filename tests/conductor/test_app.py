"""App-level behaviour: lifecycle ownership, the error middleware, privacy of logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from src.conductor.http.server import create_app
from src.llm.errors import Closed
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer
from tests.conductor.helpers import Conductor, conductor_config

SECRET = "zebra-secret-4711"


async def test_app_does_not_own_the_llm(conductor: Conductor) -> None:
    """Closing an app built without manage_llm leaves its LLM usable."""
    await conductor.client.close()
    reply = await conductor.llm.chat_detailed([{"role": "user", "content": "hi"}])
    assert reply.provider == "ollama"


async def test_managed_app_starts_and_closes_the_llm(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """With manage_llm the app starts the LLM on start-up and closes it on clean-up."""
    llm = UnifiedLLMInference(conductor_config(fake_ollama.url, fake_lmstudio.url))
    app = create_app(llm, llm.config, manage_llm=True)
    async with TestClient(TestServer(app)) as client:
        assert llm.provider_status("ollama")["healthy"] is True  # checked at start-up
        resp = await client.post("/v1/chat/completions", json={
            "model": "demi", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status == 200
    with pytest.raises(Closed, match="closed"):
        await llm.open_stream([{"role": "user", "content": "hi"}])


async def test_a_closed_llm_is_a_503_shutting_down(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Requests arriving after the LLM closed get 503 shutting_down (typed Closed, no text
    matching), on both faces."""
    llm = UnifiedLLMInference(conductor_config(fake_ollama.url, fake_lmstudio.url))
    app = create_app(llm, llm.config)
    async with TestClient(TestServer(app)) as client:
        await llm.close()
        body = {"model": "demi", "messages": [{"role": "user", "content": "hi"}]}
        resp = await client.post("/v1/chat/completions", json=body)
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "shutting_down"
        resp = await client.post("/api/chat", json=body)
        assert resp.status == 503
        assert "shutting down" in (await resp.json())["error"]


async def test_unexpected_exception_is_a_500_logged_with_traceback_without_content(
    conductor: Conductor, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug below the handler is a shaped 500, logged at ERROR with its traceback; the
    log line names the type, never the content."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError(SECRET)

    monkeypatch.setattr(conductor.llm, "open_stream", broken)
    caplog.set_level(logging.DEBUG, logger="demi")
    body = {"model": "demi", "messages": [{"role": "user", "content": SECRET}]}
    resp = await conductor.client.post("/v1/chat/completions", json=body)
    assert resp.status == 500
    err = (await resp.json())["error"]
    assert err["code"] == "internal_error"
    assert "KeyError" in err["message"]
    resp = await conductor.client.post("/api/chat", json=body)
    assert resp.status == 500
    assert "KeyError" in (await resp.json())["error"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all("KeyError" in r.getMessage() for r in errors)
    assert all(r.exc_info is not None for r in errors)
    assert all(SECRET not in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    monkeypatch.undo()
    assert (await conductor.chat()).status == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
@pytest.mark.parametrize("stream", [False, True])
async def test_provider_bug_is_a_500_not_a_provider_failure(
    conductor: Conductor, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
    path: str, stream: bool,
) -> None:
    """A provider raising TypeError (a DEMI bug) is a 500 with its traceback logged; the
    provider's breaker and stats are untouched and no other provider is tried."""
    ollama = conductor.llm.providers["ollama"]
    lmstudio = conductor.llm.providers["lmstudio"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("a bug in DEMI")

    monkeypatch.setattr(ollama, "stream", broken)
    tried: list[object] = []
    monkeypatch.setattr(lmstudio, "stream", lambda *a, **k: tried.append(a) or broken())
    caplog.set_level(logging.ERROR, logger="demi")
    before = conductor.llm.provider_status("ollama")
    resp = await conductor.chat(path, stream=stream)
    assert resp.status == 500
    body = await resp.json()
    message = body["error"]["message"] if path.startswith("/v1") else body["error"]
    assert "TypeError" in message
    bugs = [r for r in caplog.records if "TypeError" in r.getMessage()]
    assert bugs and bugs[0].exc_info is not None and bugs[0].exc_info[0] is TypeError
    after = conductor.llm.provider_status("ollama")
    assert after["circuit"] == before["circuit"] == "closed"
    assert after["stats"]["failures"] == before["stats"]["failures"] == 0
    assert after["last_error"] == before["last_error"]
    assert tried == []  # no failover to LM Studio


async def test_message_content_never_logged_at_info_or_above(
    conductor: Conductor, fake_ollama: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests, failovers, broken streams and bad input log no message content at INFO+."""
    caplog.set_level(logging.DEBUG)
    msgs = [{"role": "user", "content": SECRET}]
    await conductor.chat(messages=msgs)
    await conductor.chat(messages=msgs, stream=True)
    await conductor.chat("/api/chat", messages=msgs)
    await conductor.chat(messages=[{"role": SECRET, "content": SECRET}])
    fake_ollama.control(mode="cut", after_chunks=1)
    await (await conductor.chat(messages=msgs, stream=True)).read()
    fake_ollama.kill()
    await conductor.chat(messages=msgs)
    assert caplog.records, "expected some log lines"
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert SECRET not in record.getMessage()


async def test_debug_access_line_has_no_body(
    conductor: Conductor, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG each request logs one access line: method, path, status, provider, no body."""
    caplog.set_level(logging.DEBUG, logger="demi.conductor")
    await conductor.chat(messages=[{"role": "user", "content": SECRET}])
    lines = [r.getMessage() for r in caplog.records if r.name == "demi.conductor"]
    assert any(line.startswith("POST /v1/chat/completions 200 ollama") for line in lines)
    assert all(SECRET not in line for line in lines)


async def test_unknown_paths_use_the_simple_shape(conductor: Conductor) -> None:
    """Outside /v1 an unknown path is a 404 {"error": ...}."""
    resp = await conductor.client.get("/api/nothing")
    assert resp.status == 404
    assert (await resp.json()) == {"error": "no such endpoint: GET /api/nothing"}
