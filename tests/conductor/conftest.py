"""In-process conductor tests: a real app and a real ``UnifiedLLMInference`` over the fakes.

``conductor`` is an app served by ``aiohttp.test_utils.TestServer`` on loopback, its LLM
pointed at the session-wide fake Ollama and fake LM Studio processes; ``make_conductor``
builds one with config overrides. Nothing HTTP is mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from src.conductor.http.server import create_app
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer
from tests.conductor.helpers import Conductor, conductor_config


def pytest_configure(config: pytest.Config) -> None:
    """Make the fake-server fixtures available (a no-op when already registered)."""
    config.pluginmanager.import_plugin("tests.fakes.fixtures")


MakeConductor = Callable[..., Awaitable[Conductor]]


@pytest.fixture
async def make_conductor(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> AsyncIterator[MakeConductor]:
    """``await make_conductor(**config_overrides)``: a served app around a started LLM."""
    made: list[Conductor] = []

    async def make(**overrides: Any) -> Conductor:
        config = conductor_config(fake_ollama.url, fake_lmstudio.url, **overrides)
        llm = UnifiedLLMInference(config)
        await llm.start()
        app = create_app(llm, llm.config)
        client = TestClient(TestServer(app))
        await client.start_server()
        made.append(Conductor(client, llm, app))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            await c.client.close()
            await c.llm.close()


@pytest.fixture
async def conductor(make_conductor: MakeConductor) -> Conductor:
    """The conductor with default test settings."""
    return await make_conductor()
