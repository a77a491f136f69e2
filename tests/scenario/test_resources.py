"""No leaked sessions, clients, tasks or resource warnings, whatever happened in between.

pyproject turns every warning into an error; these tests also look directly: after close()
no aiohttp session or httpx client DEMI opened is still open, and no task is left running.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import pytest

from src.llm import AllProvidersFailed
from src.testing.fakes.launcher import FakeServer
from tests.conftest import HI, MakeLLM, dead_url

pytestmark = pytest.mark.timeout(60)


def open_clients() -> set[int]:
    """ids of every aiohttp session and httpx async client that is still open."""
    gc.collect()
    found = set()
    for obj in gc.get_objects():
        if isinstance(obj, aiohttp.ClientSession) and not obj.closed:
            found.add(id(obj))
        elif isinstance(obj, httpx.AsyncClient) and not obj.is_closed:
            found.add(id(obj))
    return found


def other_tasks() -> list[asyncio.Task[object]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


@contextmanager
def no_resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning (gc included) raised inside the block; fail on ResourceWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


async def test_close_leaves_no_session_client_or_task(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """After a session that used both providers, close() leaves nothing open."""
    before = open_clients()
    with no_resource_warnings():
        async with make_llm() as llm:
            await llm.chat(HI)
            llm.force_provider("lmstudio")
            await llm.chat(HI)
            async for _ in llm.stream_chat(HI):
                break  # a stream abandoned early is closed too
            assert open_clients() - before  # sanity: DEMI's clients are visible while open
        del llm
        leftover = open_clients() - before
        tasks = other_tasks()
    assert leftover == set()
    assert tasks == []


async def test_close_is_idempotent(make_llm: MakeLLM) -> None:
    """close() twice is harmless, and a closed instance refuses new chats clearly."""
    llm = make_llm()
    async with llm:
        pass
    await llm.close()
    with pytest.raises(RuntimeError, match="closed"):
        await llm.chat(HI)


async def test_async_with_closes_cleanly_when_startup_checks_fail(make_llm: MakeLLM) -> None:
    """Both providers down at start-up: entering, failing a chat and leaving leak nothing."""
    before = open_clients()
    with no_resource_warnings():
        with pytest.raises(AllProvidersFailed):
            async with make_llm(dead_url(), dead_url()) as llm:
                await llm.chat(HI)
        del llm
        leftover = open_clients() - before
        tasks = other_tasks()
    assert leftover == set()
    assert tasks == []


async def test_async_with_closes_when_body_raises(
    make_llm: MakeLLM, fake_ollama: FakeServer
) -> None:
    """An exception inside the async-with body still closes every session."""
    before = open_clients()
    with no_resource_warnings():
        with pytest.raises(KeyError):
            async with make_llm() as llm:
                await llm.chat(HI)
                raise KeyError("boom")
        del llm
        leftover = open_clients() - before
    assert leftover == set()


async def test_cancelled_startup_leaves_nothing_open(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Start-up checks cancelled by the caller (a timeout around async with) leak no session."""
    fake_ollama.control(mode="hang", routes="health")
    fake_lmstudio.control(mode="hang", routes="health")
    before = open_clients()
    llm = make_llm(health_check_timeout=30)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                async with llm:
                    pytest.fail("start-up should still be waiting on the hung health checks")
        leftover = open_clients() - before
        tasks = other_tasks()
    finally:
        await llm.close()  # the test cleans up whatever DEMI left, so no later test sees it
    assert tasks == []
    assert leftover == set()
