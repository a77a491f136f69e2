"""The engine process dies, hangs or cannot start: DEMI's side stays up and says why.

Real engine processes (llama.cpp serving Gemma 3 270M) are killed with real signals; the
start-failure cases use small stand-in children. Each test has its own provider.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

from src.llm.engine.supervisor import RestartPolicy, describe_exit
from src.llm.errors import EmbeddedModelLoading, ProviderTimeout, ProviderUnavailable
from src.llm.providers.embedded import EmbeddedProvider
from src.llm.types import ChatChunk, ChatRequest
from tests.integration.engines import LOAD_TIMEOUT, make_provider, needs_embedded, python_child
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, needs_embedded]

LONG = ChatRequest(
    messages=[{"role": "user", "content": "Count from 1 to 100."}], max_tokens=64,
    temperature=0.0,
)
HELLO = ChatRequest(messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


async def ready(provider: EmbeddedProvider) -> int:
    """Wait for the engine; return its pid."""
    assert await provider.wait_ready(LOAD_TIMEOUT), provider.engine.reason
    pid = provider.engine_pid
    assert pid is not None
    return pid


async def answers_again(provider: EmbeddedProvider, old_pid: int) -> None:
    """A new engine process starts and serves a reply."""
    await wait_until(
        lambda: provider.engine_pid not in (None, old_pid), "a new engine process", LOAD_TIMEOUT
    )
    await ready(provider)
    reply = await provider.chat(HELLO)
    assert reply.done and reply.text


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
async def test_engine_killed_mid_reply(sig: signal.Signals) -> None:
    """Killed mid-reply: the reply fails naming the signal; the engine restarts and answers."""
    provider = make_provider(context_window=512)
    try:
        pid = await ready(provider)
        stream = provider.stream(LONG)
        assert (await anext(stream)).text
        os.kill(pid, sig)
        with pytest.raises(ProviderUnavailable) as failed:
            await collect(stream)
        assert f"Embedded model process died: {sig.name}" in failed.value.reason
        assert provider.in_flight == 0
        await answers_again(provider, pid)
        assert provider.engine.restarts == 1
    finally:
        await provider.close()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
async def test_engine_killed_while_idle(
    sig: signal.Signals, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed while idle: health says why, a message in between is told to wait, then it serves."""
    provider = make_provider(context_window=512, restart_backoff=1.0)
    try:
        pid = await ready(provider)
        with caplog.at_level(logging.WARNING):
            os.kill(pid, sig)
            await wait_until(lambda: provider.engine.state != "ready", "the death noticed")
        report = await provider.health()
        assert not report.healthy and not report.loading
        assert report.error is not None and sig.name in report.error
        with pytest.raises(EmbeddedModelLoading, match="restarting"):
            await collect(provider.stream(HELLO))
        assert any(
            f"Embedded model process died: {sig.name}" in r.getMessage()
            and "restarting in 1s" in r.getMessage()
            for r in caplog.records
        )
        await answers_again(provider, pid)
    finally:
        await provider.close()


async def test_engine_hung_mid_reply_is_restarted() -> None:
    """An engine that goes silent mid-reply: the idle bound fails the reply; it restarts."""
    provider = make_provider(context_window=512, idle=1.0)
    try:
        pid = await ready(provider)
        stream = provider.stream(LONG)
        assert (await anext(stream)).text
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(ProviderTimeout, match="no data"):
            await collect(stream)
        await wait_until(lambda: provider.engine.state != "ready", "the hung engine stopped")
        assert provider.engine.reason is not None and "hung" in provider.engine.reason
        await answers_again(provider, pid)
    finally:
        await provider.close()


async def test_engine_hung_while_idle_fails_its_health_check() -> None:
    """A stopped (hung) idle engine fails its health check, is killed and restarted."""
    provider = make_provider(context_window=512, health=0.5)
    try:
        pid = await ready(provider)
        os.kill(pid, signal.SIGSTOP)
        report = await provider.health()
        assert not report.healthy
        await wait_until(lambda: provider.engine.state != "ready", "the hung engine stopped")
        assert "hung: no answer to a health check" in (provider.engine.reason or "")
        await answers_again(provider, pid)
    finally:
        await provider.close()


async def test_engine_that_exits_at_once_is_restarted_with_backoff() -> None:
    """A child that exits at once: the reason names the exit, and restarts slow down."""
    starts: list[float] = []

    def command(status_fd: int, listen_fd: int) -> list[str]:
        starts.append(time.monotonic())
        code = "import sys; print('no engine here'); sys.exit(7)"
        return python_child(code)(status_fd, listen_fd)

    provider = make_provider(command=command, restart_backoff=0.1, restart_backoff_max=0.4)
    try:
        assert not await provider.wait_ready(5)  # gives up at the first failed start
        await wait_until(lambda: len(starts) >= 5, "five start attempts", 20)
        reason = provider.engine.reason or ""
        assert "process died while starting: exit code 7 (no engine here)" in reason
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # 0.1, 0.2, 0.4, 0.4: each wait at least the policy's delay (no hot loop).
        for gap, least in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=False):
            assert gap >= least
        report = await provider.health()
        assert not report.healthy and not report.loading and report.error == reason
        with pytest.raises(ProviderUnavailable, match="exit code 7"):
            await collect(provider.stream(HELLO))
    finally:
        await provider.close()


async def test_illegal_instruction_at_start_is_reported_with_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child killed by SIGILL (a build that does not fit the CPU) is reported with the fix."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    provider = make_provider(command=python_child(code), restart_backoff=5)
    try:
        with caplog.at_level(logging.WARNING):
            assert not await provider.wait_ready(10)
        reason = provider.engine.reason or ""
        assert "SIGILL (illegal instruction; this llama.cpp build does not fit this CPU" in reason
        assert "GGML_NATIVE=OFF (see README)" in reason
        assert any("SIGILL" in r.getMessage() for r in caplog.records)
    finally:
        await provider.close()


def test_restart_policy_doubles_and_resets() -> None:
    """Backoff doubles per quick death up to the cap, and resets after a stable run."""
    policy = RestartPolicy(backoff=0.5, backoff_max=4, stable_after=60, start_timeout=10)
    delay = None
    seen = []
    for _ in range(6):
        delay = policy.next_delay(delay, served_for=1)
        seen.append(delay)
    assert seen == [0.5, 1, 2, 4, 4, 4]
    assert policy.next_delay(4, served_for=61) == 0.5
    assert describe_exit(-signal.SIGKILL).startswith("SIGKILL (killed")


def test_engine_exits_when_its_parent_is_killed() -> None:
    """SIGKILL of the process that started the engine leaves no orphan engine behind."""
    import subprocess
    import sys
    import textwrap

    import psutil

    script = textwrap.dedent(
        """
        import asyncio, sys
        from tests.integration.engines import make_provider
        async def main():
            p = make_provider(context_window=256)
            assert await p.wait_ready(120)
            print(p.engine_pid, flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # the engine pid, once it is ready (or "" on a crash)
        engine = psutil.Process(int(line))
        parent.kill()
        parent.wait()
        engine.wait(timeout=10)  # raises psutil.TimeoutExpired if it is still running
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


async def test_engine_output_with_huge_lines_never_blocks_it() -> None:
    """A child printing a 1 MB line is drained (it never blocks on a full pipe)."""
    code = "import sys; sys.stdout.write('x' * 1_000_000 + '\\nbye\\n'); sys.exit(9)"
    provider = make_provider(command=python_child(code), restart_backoff=5)
    try:
        assert not await provider.wait_ready(20)
        assert "exit code 9 (bye)" in (provider.engine.reason or "")
    finally:
        await provider.close()
