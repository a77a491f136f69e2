"""A conductor process that is safe to expose: key, bind check, head limits, quiet logs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import ollama
import openai
import pytest

from src.testing.fakes.launcher import REPO_ROOT, FakeServer, free_port
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import HI, OLLAMA_MODEL, OLLAMA_REPLY, ConductorProcess

KEY = "e2e-key-0123456789"

LIMITS_YAML = """\
llm:
  probe_interval: 0.05
  connect_timeout: 1
  ollama: {timeout: 10}
  lmstudio: {timeout: 10}
conductor:
  header_timeout: 0.5
  max_header_bytes: 2048
"""


def _keyed(make_demi: MakeConductor) -> ConductorProcess:
    return make_demi(env={"DEMI_API_KEY": KEY})


async def test_real_clients_without_the_key_get_401(make_demi: MakeConductor) -> None:
    """openai and ollama clients get 401 without (or with a wrong) key and answers with it."""
    demi = _keyed(make_demi)
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="wrong",
                                  max_retries=0, timeout=30) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="demi", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="demi", messages=HI,  # type: ignore[arg-type]
                                              stream=True)
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key=KEY,
                                  max_retries=0, timeout=30) as good:
        reply = await good.chat.completions.create(model="demi", messages=HI)  # type: ignore[arg-type]
        assert reply.choices[0].message.content == OLLAMA_REPLY

    anonymous = ollama.AsyncClient(host=demi.url, timeout=10)
    try:
        with pytest.raises(ollama.ResponseError) as info:
            await anonymous.chat(model=OLLAMA_MODEL, messages=HI)
        assert info.value.status_code == 401
        with pytest.raises(ollama.ResponseError) as info:
            async for _ in await anonymous.chat(model=OLLAMA_MODEL, messages=HI, stream=True):
                pass
        assert info.value.status_code == 401
    finally:
        await anonymous.close()
    keyed = ollama.AsyncClient(host=demi.url, timeout=10, headers={"x-api-key": KEY})
    try:
        answer = await keyed.chat(model=OLLAMA_MODEL, messages=HI)
        assert answer.message.content == OLLAMA_REPLY
    finally:
        await keyed.close()
    assert demi.get_json("/health") == {"status": "ok"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_wildcard_bind_without_key_refuses_to_start(host: str, tmp_path: Path) -> None:
    """serve --host 0.0.0.0 without a key exits 2 saying how to set DEMI_API_KEY."""
    env = {k: v for k, v in ConductorProcess(tmp_path, "http://127.0.0.1:9",
                                             "http://127.0.0.1:9").env.items()
           if k != "DEMI_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "src.conductor", "serve", "--host", host,
         "--port", str(free_port())],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True,
        timeout=60, text=True,
    )
    assert proc.returncode == 2
    assert "Refusing to listen" in proc.stderr
    assert "DEMI_API_KEY" in proc.stderr


def _limited(make_demi: MakeConductor, tmp_path: Path) -> ConductorProcess:
    config = tmp_path / "limits.yaml"
    config.write_text(LIMITS_YAML, encoding="utf-8")
    return make_demi(env={"DEMI_CONFIG": str(config)})


def test_a_slow_request_head_is_cut_off(make_demi: MakeConductor, tmp_path: Path) -> None:
    """A client that never finishes its request head is disconnected (header_timeout)."""
    demi = _limited(make_demi, tmp_path)
    with socket.create_connection(("127.0.0.1", demi.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no blank line: head unfinished
        assert sock.recv(1024) == b""  # closed by the server (a recv timeout would raise)


def test_an_oversized_header_is_refused(make_demi: MakeConductor, tmp_path: Path) -> None:
    """A header field longer than max_header_bytes gets a 4xx, not a handler call."""
    demi = _limited(make_demi, tmp_path)
    with socket.create_connection(("127.0.0.1", demi.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
        status_line = sock.recv(1024).split(b"\r\n", 1)[0]
    assert status_line.split()[1] in (b"400", b"431")


SECRET = "zebra-quartz-71"


async def test_no_message_content_in_logs_under_errors_and_failover(
    make_demi: MakeConductor, ollama_fake: FakeServer, lmstudio_fake: FakeServer
) -> None:
    """At INFO, neither prompts nor replies reach the log: errors, cuts, failover, all down."""
    demi = make_demi()
    for fake in (ollama_fake, lmstudio_fake):
        fake.control(reply=f"the answer is {SECRET} indeed")
    messages = [{"role": "user", "content": f"tell me about {SECRET}"}]
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as oai:
        async def ask(stream: bool) -> None:
            if stream:
                async for _ in await oai.chat.completions.create(
                        model="demi", messages=messages, stream=True):  # type: ignore[arg-type]
                    pass
            else:
                await oai.chat.completions.create(model="demi", messages=messages)  # type: ignore[arg-type]

        for mode in ("status", "cut", "malformed", "midstream_error"):
            ollama_fake.control(mode=mode, times=1)
            for stream in (False, True):
                try:
                    await ask(stream)
                except openai.APIError:
                    pass  # an error after text reached the caller is allowed here
            ollama_fake.control(mode="ok")
        ollama_fake.kill()
        lmstudio_fake.control(mode="status", status=500)
        with pytest.raises(openai.APIError):
            await ask(False)
        with pytest.raises(openai.BadRequestError):  # the caller's own bad request
            await oai.chat.completions.create(model="demi", messages=[  # type: ignore[list-item]
                {"role": "wizard", "content": SECRET}])
    demi.stop()
    logs = "".join((demi.workdir / f).read_text(errors="replace")
                   for f in ("stdout.log", "stderr.log"))
    assert "Ollama inference failed" in logs  # the run did fail over, and logged it
    assert SECRET not in logs


async def test_a_long_stream_outlives_the_head_timeout(
    make_demi: MakeConductor, ollama_fake: FakeServer, tmp_path: Path
) -> None:
    """header_timeout bounds reading a request head, not a reply that takes longer to stream."""
    demi = _limited(make_demi, tmp_path)
    ollama_fake.control(chunk_delay=0.5)  # three chunks: well past the 0.5 s head timeout
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as oai:
        text = ""
        async for chunk in await oai.chat.completions.create(
                model="demi", messages=HI, stream=True):  # type: ignore[arg-type]
            text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == OLLAMA_REPLY
