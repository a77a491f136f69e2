"""End-to-end fixtures: private fake upstream processes and a conductor process over them.

Each test gets its own fakes (tests kill and restart them) and its own conductor process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
