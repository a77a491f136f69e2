"""End-to-end fixtures: private fake upstream processes and a conductor process over them.

Each test gets its own fakes (tests kill and restart them) and its own conductor process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from src.testing.fakes.launcher import FakeServer
from tests.e2e.helpers import ConductorProcess


def pytest_configure(config: pytest.Config) -> None:
    """Make the fake-server fixtures available (a no-op when already registered)."""
    config.pluginmanager.import_plugin("tests.fakes.fixtures")


@pytest.fixture
def ollama_fake(fake_server_factory: Callable[..., FakeServer]) -> FakeServer:
    """A private fake Ollama process."""
    return fake_server_factory("ollama")


@pytest.fixture
def lmstudio_fake(fake_server_factory: Callable[..., FakeServer]) -> FakeServer:
    """A private fake LM Studio process."""
    return fake_server_factory("lmstudio")


MakeConductor = Callable[..., ConductorProcess]


@pytest.fixture
def make_demi(
    tmp_path: Path, ollama_fake: FakeServer, lmstudio_fake: FakeServer
) -> Iterator[MakeConductor]:
    """``make_demi(**kwargs)`` starts a conductor process over the private fakes."""
    started: list[ConductorProcess] = []

    def make(**kwargs: Any) -> ConductorProcess:
        workdir = tmp_path / f"demi{len(started)}"
        workdir.mkdir()
        proc = ConductorProcess(workdir, ollama_fake.url, lmstudio_fake.url, **kwargs)
        started.append(proc)
        return proc.start()

    try:
        yield make
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def demi(make_demi: MakeConductor) -> ConductorProcess:
    """A running conductor process with the default e2e settings."""
    return make_demi()


@pytest.fixture
async def oai(demi: ConductorProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real ``openai`` client on the test's conductor (no retries, so errors show)."""
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x", max_retries=0,
                                  timeout=30) as client:
        yield client


@pytest.fixture
async def oll(demi: ConductorProcess) -> AsyncIterator[ollama.AsyncClient]:
    """The real ``ollama`` client on the test's conductor."""
    client = ollama.AsyncClient(host=demi.url, timeout=30)
    try:
        yield client
    finally:
        await client.close()
