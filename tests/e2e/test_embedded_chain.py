"""The conductor with both servers down answers through the embedded model, and survives it dying.

One conductor process for the module (with its engine process), driven over HTTP and by the
real ``openai`` and ``ollama`` clients. Tests run in file order: the answers first, then the
engine is killed mid-reply and while idle.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import psutil
import pytest
from openai import OpenAI

from src.testing.fakes.launcher import free_port
from tests.e2e.helpers import ConductorProcess
from tests.integration.engines import needs_embedded

pytestmark = [pytest.mark.integration, needs_embedded]

ASK = [{"role": "user", "content": "What is the capital of France?"}]
COUNT = [{"role": "user", "content": "Count from 1 to 100."}]
LOAD = 120.0


@pytest.fixture(scope="module")
def demi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConductorProcess]:
    """A conductor whose Ollama and LM Studio addresses have nothing listening."""
    workdir: Path = tmp_path_factory.mktemp("embedded-chain")
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    proc = ConductorProcess(
        workdir, dead[0], dead[1],
        env={"DEMI_EMBEDDED_ENABLED": "true", "DEMI_HEALTH_CHECK_INTERVAL": "1"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def post(
    demi: ConductorProcess, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        demi.url + path, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=LOAD) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def engine(demi: ConductorProcess) -> psutil.Process:
    """The conductor's engine child process (waits for one to exist)."""
    assert demi.proc is not None
    deadline = time.monotonic() + LOAD
    while time.monotonic() < deadline:
        for child in psutil.Process(demi.proc.pid).children():
            try:
                if "src.llm.engine.child" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError("no engine process")


def embedded_status(demi: ConductorProcess) -> dict[str, Any]:
    status = demi.get_json("/status")
    return dict(status["providers"]["embedded"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "demi", "messages": ASK, "max_tokens": 16}),
        ("/v1/chat/completions",
         {"model": "demi", "messages": ASK, "max_tokens": 16, "stream": True}),
        ("/api/chat",
         {"model": "demi", "messages": ASK, "stream": False, "options": {"num_predict": 16}}),
        ("/api/chat", {"model": "demi", "messages": ASK, "options": {"num_predict": 16}}),
    ],
    ids=["openai-json", "openai-sse", "ollama-json", "ollama-ndjson"],
)
def test_embedded_answers_every_face(
    demi: ConductorProcess, path: str, body: dict[str, Any]
) -> None:
    """With both servers down, each API shape gets a non-empty answer from the embedded model."""
    status, headers, raw = post(demi, path, body)
    assert status == 200, raw
    assert headers["X-DEMI-Provider"] == "embedded"
    text = raw.decode()
    if path.startswith("/v1") and body.get("stream"):
        events = [json.loads(line[5:]) for line in text.splitlines()
                  if line.startswith("data:") and "[DONE]" not in line]
        content = "".join(e["choices"][0]["delta"].get("content") or ""
                          for e in events if e.get("choices"))
        assert text.rstrip().endswith("data: [DONE]")
    elif path.startswith("/v1"):
        content = json.loads(text)["choices"][0]["message"]["content"]
    elif body.get("stream") is False:
        content = json.loads(text)["message"]["content"]
    else:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        content = "".join(line["message"]["content"] for line in lines)
        assert lines[-1]["done"] is True
    assert content.strip()


def test_real_clients_get_embedded_answers(demi: ConductorProcess) -> None:
    """The real openai and ollama clients, streaming and not, are answered by the embedded model."""
    with OpenAI(base_url=demi.url + "/v1", api_key="unused", max_retries=0, timeout=LOAD) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demi", messages=ASK, max_tokens=16,  # type: ignore[arg-type]
        )
        assert raw.headers["X-DEMI-Provider"] == "embedded"
        assert raw.parse().choices[0].message.content
        pieces = client.chat.completions.create(
            model="demi", messages=ASK, max_tokens=16, stream=True,  # type: ignore[arg-type]
        )
        assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices).strip()

    with ollama.Client(host=demi.url, timeout=LOAD) as oclient:
        reply = oclient.chat(model="demi", messages=ASK, options={"num_predict": 16})
        assert reply.message.content
        streamed = oclient.chat(
            model="demi", messages=ASK, stream=True, options={"num_predict": 16}
        )
        assert "".join(part.message.content or "" for part in streamed).strip()


def test_embedded_takes_text_parts_but_never_tools(demi: ConductorProcess) -> None:
    """Text parts are joined for the embedded model; a request offering tools is not answered
    as plain text (503 with the servers' reasons) and counts nothing against the model."""
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text",
                                                             "text": "of France?"}]
    status, headers, raw = post(demi, "/api/chat", {
        "model": "demi", "stream": False, "options": {"num_predict": 16},
        "messages": [{"role": "user", "content": parts}]})
    assert status == 200, raw
    assert headers["X-DEMI-Provider"] == "embedded"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    status, _, raw = post(demi, "/v1/chat/completions",
                          {"model": "demi", "messages": ASK, "tools": tools})
    assert status == 503, raw
    assert embedded_status(demi)["circuit"] == "closed"


def test_engine_segfault_mid_reply_ends_cleanly_and_recovers(demi: ConductorProcess) -> None:
    """SIGSEGV mid-stream: a terminal error event, the conductor stays up, the engine comes back."""
    victim = engine(demi)
    body = {"model": "demi", "messages": COUNT, "max_tokens": 200, "stream": True}
    req = urllib.request.Request(
        demi.url + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=LOAD) as resp:
        assert resp.headers["X-DEMI-Provider"] == "embedded"
        first = resp.readline()
        assert first.startswith(b"data:")
        victim.send_signal(signal.SIGSEGV)
        rest = resp.read().decode()
    assert '"error"' in rest and "[DONE]" not in rest
    assert "SIGSEGV" in rest
    assert demi.proc is not None and demi.proc.poll() is None

    row = embedded_status(demi)
    assert "SIGSEGV" in (row["last_error"] or "")
    victim.wait(timeout=10)
    status, headers, raw = post(demi, "/v1/chat/completions",
                                {"model": "demi", "messages": ASK, "max_tokens": 8})
    assert status == 200, raw
    assert headers["X-DEMI-Provider"] == "embedded"
    assert engine(demi).pid != victim.pid
    assert "Embedded model process died: SIGSEGV (segmentation fault)" in demi.stderr()


def test_engine_killed_while_idle_is_shown_and_replaced(demi: ConductorProcess) -> None:
    """SIGKILL while idle: /status shows the death, the next message still gets an answer."""
    victim = engine(demi)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    deadline = time.monotonic() + 10
    while "SIGKILL" not in (embedded_status(demi)["last_error"] or ""):
        assert time.monotonic() < deadline, embedded_status(demi)
        time.sleep(0.05)
    status, headers, raw = post(demi, "/api/chat", {
        "model": "demi", "messages": ASK, "stream": False, "options": {"num_predict": 8},
    })
    assert status == 200, raw
    assert headers["X-DEMI-Provider"] == "embedded"
    assert json.loads(raw)["message"]["content"]
    assert demi.proc is not None and demi.proc.poll() is None
