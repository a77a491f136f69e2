"""Starting and stopping the conductor process: graceful drain, forced stop, bad port."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import openai
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import HI, ConductorProcess
from tests.waiting import wait_until

SLOW_REPLY = "one two three four five six"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_lets_an_in_flight_stream_finish_then_exits_0(
    make_demi: MakeConductor, ollama_fake: FakeServer, sig: signal.Signals
) -> None:
    """On SIGTERM/SIGINT a stream already running completes in full and the process exits 0."""
    demi = make_demi(grace=30)
    ollama_fake.control(reply=SLOW_REPLY, chunk_delay=0.2)
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as client:
        stream = await client.chat.completions.create(model="demi", messages=HI, stream=True)
        text: list[str] = []
        finishes: list[str] = []
        signalled = False
        async for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
            if not signalled and "".join(text):
                demi.signal(sig)  # the first text is out: stop the server now
                signalled = True
                await wait_until(lambda: f"{sig.name} received" in demi.stderr(),
                                 "the conductor to acknowledge the signal")
    assert "".join(text) == SLOW_REPLY
    assert finishes == ["stop"]
    assert demi.wait() == 0
    assert "DEMI conductor stopped" in demi.stderr()


async def test_no_new_connections_after_the_signal(
    make_demi: MakeConductor, ollama_fake: FakeServer, lmstudio_fake: FakeServer
) -> None:
    """Once draining, the listening socket is closed: new connections are refused."""
    demi = make_demi(grace=30)
    ollama_fake.control(first_token_delay=3)
    lmstudio_fake.control(mode="hang")  # a hedge to LM Studio never wins: Ollama answers
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as client:
        pending = asyncio.create_task(
            client.chat.completions.create(model="demi", messages=HI))
        await wait_until(lambda: any(r["path"] == "/api/chat" for r in ollama_fake.requests()),
                         "the request to reach Ollama")
        demi.signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", demi.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        await wait_until(refused, "the listening socket to close")
        reply = await pending
    assert reply.choices[0].message.content == "Hello from fake-ollama."
    assert demi.wait() == 0


async def test_second_signal_stops_at_once(
    make_demi: MakeConductor, ollama_fake: FakeServer
) -> None:
    """A second SIGTERM ends the drain immediately; the stuck request is cut off."""
    demi = make_demi(grace=600)
    ollama_fake.control(first_token_delay=600)
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=60) as client:
        pending = asyncio.create_task(
            client.chat.completions.create(model="demi", messages=HI))
        await wait_until(lambda: any(r["path"] == "/api/chat" for r in ollama_fake.requests()),
                         "the request to reach Ollama")
        demi.signal(signal.SIGTERM)
        await wait_until(lambda: "SIGTERM received" in demi.stderr(),
                         "the first signal to register")
        demi.signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, demi.wait)
        with pytest.raises(openai.APIConnectionError):
            await pending
    assert code == 128 + signal.SIGTERM
    assert "stopping now" in demi.stderr()


def test_port_in_use_is_a_clear_error(tmp_path: Path, ollama_fake: FakeServer,
                                      lmstudio_fake: FakeServer) -> None:
    """A port already taken ends the process with exit 1 and a message naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        demi = ConductorProcess(tmp_path, ollama_fake.url, lmstudio_fake.url)
        demi.port = taken.getsockname()[1]
        demi.env["DEMI_PORT"] = str(demi.port)
        try:
            with pytest.raises(AssertionError, match="exited with 1"):
                demi.start()
            assert f"Cannot listen on 127.0.0.1:{demi.port}" in demi.stderr()
        finally:
            demi.stop()
