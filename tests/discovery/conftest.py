"""Fixtures for the discovery tests: fake engines as real processes on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from src.testing.fakes.launcher import FakeServer


def pytest_configure(config: pytest.Config) -> None:
    """Register the fake-server fixtures (a no-op when the top-level conftest already did)."""
    config.pluginmanager.import_plugin("tests.fakes.fixtures")


MakeEngine = Callable[..., FakeServer]


@pytest.fixture
def make_engine() -> Iterator[MakeEngine]:
    """``make_engine("vllm", port=None, args=[...])``: a fake engine process, stopped after
    the test."""
    started: list[FakeServer] = []

    def make(flavour: str, port: int | None = None, args: list[str] | None = None) -> FakeServer:
        server = FakeServer("engines", port=port, args=["--flavour", flavour, *(args or [])])
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()
