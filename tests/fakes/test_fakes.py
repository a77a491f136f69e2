"""Self-checks of the control plane and the process lifecycle shared by both fakes.

Protocol details are pinned in test_fakes_ollama.py and test_fakes_lmstudio.py; here: the
``/_control`` API (times, routes, request log, validation) and what a test can do to the process
(SIGKILL -> connection refused, restart on the same port, start errors, no leaks).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request

import aiohttp
import ollama
import openai
import pytest

from src.testing.fakes.launcher import REPO_ROOT, FakeServer, FakeServerError, free_port
from tests.fakes.fixtures import FakeServerFactory
from tests.waiting import wait_until, wait_until_sync

pytestmark = pytest.mark.timeout(60)
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.asyncio
async def test_times_fails_once_then_recovers(fake_ollama: FakeServer) -> None:
    """`times: 1` applies the mode to one matching request, then the fake is healthy again."""
    snap = fake_ollama.control(mode="status", status=503, times=1)
    assert snap["remaining"] == 1
    async with ollama.AsyncClient(host=fake_ollama.url, timeout=5) as c:
        with pytest.raises(ollama.ResponseError):
            await c.chat(model="llama3.2:1b", messages=HI)
        assert (await c.chat(model="llama3.2:1b", messages=HI)).done
    assert fake_ollama.config()["behaviour"]["mode"] == "ok"


@pytest.mark.asyncio
async def test_routes_scope_chat_vs_health(fake_lmstudio: FakeServer) -> None:
    """routes=chat (default) spares the model list; routes=health breaks only the model list."""
    async with openai.AsyncOpenAI(
        base_url=fake_lmstudio.url + "/v1", api_key="x", max_retries=0, timeout=5
    ) as oa:
        fake_lmstudio.control(mode="status", status=500)
        assert [m.id async for m in oa.models.list()] == ["qwen2.5-7b-instruct"]
        with pytest.raises(openai.InternalServerError):
            await oa.chat.completions.create(model="m", messages=HI)  # type: ignore[arg-type]
        fake_lmstudio.control(routes="health")
        with pytest.raises(openai.InternalServerError):
            await oa.models.list()
        assert (await oa.chat.completions.create(model="m", messages=HI)).choices  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_request_log_records_and_clears(fake_ollama: FakeServer) -> None:
    """API requests are logged (method, path, parsed JSON, headers); control calls are not."""
    async with aiohttp.ClientSession() as session:
        body = {"model": "llama3.2:1b", "messages": HI, "stream": False}
        async with session.post(
            fake_ollama.url + "/api/chat", json=body, headers={"X-Test": "1"}
        ) as resp:
            assert resp.status == 200
    log = fake_ollama.requests()
    assert [(r["method"], r["path"]) for r in log] == [("POST", "/api/chat")]
    assert log[0]["json"] == body and log[0]["headers"]["X-Test"] == "1"
    fake_ollama.clear_requests()
    assert fake_ollama.requests() == []


def test_control_rejects_bad_fields(fake_lmstudio: FakeServer) -> None:
    """Typos in control calls fail loudly instead of silently meaning `ok`."""
    for bad in (
        {"mdoe": "hang"},
        {"mode": "explode"},
        {"status": 200},
        {"times": 0},
        {"loaded": ["not-there"]},
    ):
        with pytest.raises(FakeServerError, match="400"):
            fake_lmstudio.control(**bad)
    assert fake_lmstudio.config()["behaviour"]["mode"] == "ok"


def test_reset_restores_defaults(fake_lmstudio: FakeServer) -> None:
    """POST /_control/reset restores the command-line defaults."""
    fake_lmstudio.control(mode="hang", models=[], reply="x")
    snap = fake_lmstudio.reset()
    assert snap["behaviour"]["mode"] == "ok" and snap["models"] == ["qwen2.5-7b-instruct"]
    assert snap["reply"] == "Hello from fake-lmstudio." and snap["recorded"] == 0


@pytest.mark.asyncio
async def test_first_token_delay_applies_in_ok_mode(fake_lmstudio: FakeServer) -> None:
    """first_token_delay holds back the whole answer, even when the mode is ok."""
    fake_lmstudio.control(first_token_delay=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake_lmstudio.url + "/v1/models") as resp,
    ):
        assert resp.status == 200  # health routes are not governed by routes=chat ...
    async with aiohttp.ClientSession() as session:
        started = loop.time()
        body = {"model": "m", "messages": HI}
        async with session.post(fake_lmstudio.url + "/v1/chat/completions", json=body) as resp:
            await resp.read()
    assert loop.time() - started >= 0.25  # ... but chat is


@pytest.mark.asyncio
async def test_sigkill_refuses_then_restart_serves_on_same_port(
    fake_server_factory: FakeServerFactory,
) -> None:
    """SIGKILL leaves the port refusing connections; restart() brings it back on the same port."""
    server = fake_server_factory("ollama")
    port, pid = server.port, server.pid
    server.control(mode="status", status=500)
    server.kill()
    assert not server.is_running()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(server.url + "/")
    async with ollama.AsyncClient(host=server.url, timeout=2) as c:
        with pytest.raises(ConnectionError):
            await c.chat(model="llama3.2:1b", messages=HI)
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=2
    ) as oa:
        with pytest.raises(openai.APIConnectionError):
            await oa.models.list()
    server.restart()
    assert server.port == port and server.pid != pid
    async with ollama.AsyncClient(host=server.url, timeout=5) as c:  # fresh process: defaults again
        assert (
            await c.chat(model="llama3.2:1b", messages=HI)
        ).message.content == "Hello from fake-ollama."


@pytest.mark.asyncio
async def test_kill_during_hang_drops_open_connection(
    fake_server_factory: FakeServerFactory,
) -> None:
    """Killing the process under a hanging request makes the client fail, not wait forever."""
    server = fake_server_factory("lmstudio")
    server.control(mode="hang")
    async with aiohttp.ClientSession() as session:
        body = {"model": "m", "messages": HI}
        pending = asyncio.ensure_future(
            session.post(server.url + "/v1/chat/completions", json=body)
        )
        await wait_until(server.requests, "the fake to have the request in hand")
        server.kill()
        with pytest.raises(aiohttp.ClientError):
            await pending


def test_explicit_port_and_cli_options(fake_server_factory: FakeServerFactory) -> None:
    """--port, --model, --loaded, --reply-tokens reach the process and show in its config."""
    port = free_port()
    server = fake_server_factory(
        "lmstudio",
        port=port,
        args=["--model", "a", "--model", "b", "--loaded", "b", "--reply-tokens", "32"],
    )
    assert server.port == port and server.url == f"http://127.0.0.1:{port}"
    snap = server.config()
    assert (snap["models"], snap["loaded"], snap["reply_tokens"]) == (["a", "b"], ["b"], 32)


def test_start_failure_reports_stderr() -> None:
    """A fake that cannot start raises FakeServerError carrying the process's stderr."""
    with pytest.raises(FakeServerError, match="unrecognized arguments"):
        FakeServer("ollama", args=["--bogus"]).start()
    with (
        FakeServer("ollama") as first,
        pytest.raises(FakeServerError, match=r"address already in use|Errno"),
    ):
        FakeServer("ollama", port=first.port).start()


def test_context_manager_stops_and_reaps() -> None:
    """Leaving the `with` block terminates the process and leaves no zombie."""
    with FakeServer("lmstudio") as server:
        pid = server.pid
        assert pid is not None and server.is_running()
    assert not server.is_running()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped by the launcher


def test_module_runs_standalone_and_prints_ready() -> None:
    """`python -m src.testing.fakes.fake_lmstudio --port 0` prints exactly `READY <port>`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.testing.fakes.fake_lmstudio", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert re.fullmatch(r"READY [1-9][0-9]*\n", line)
        port = int(line.split()[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as resp:
            assert json.loads(resp.read())["object"] == "list"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_fake_exits_when_its_test_process_dies() -> None:
    """A fake started by the launcher exits once its parent is SIGKILLed (no orphaned servers)."""
    script = ("from src.testing.fakes.launcher import FakeServer; "
              "print(FakeServer('ollama').start().pid)")
    parent = subprocess.Popen(
        [sys.executable, "-c", script + "; import time; time.sleep(60)"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert parent.stdout is not None
        fake_pid = int(parent.stdout.readline())
        assert not _gone(fake_pid)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    # The fake polls its parent every 0.5 s.
    wait_until_sync(lambda: _gone(fake_pid), "the orphaned fake to exit")
