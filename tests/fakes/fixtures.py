"""Pytest plugin: fixtures for the fake upstreams.

Enable with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the top-level conftest.

* ``fake_ollama`` / ``fake_lmstudio``: one process per test session (spawning python+aiohttp
  costs ~0.3 s), reset to defaults with an empty request log before every test.  If a test killed
  it anyway, it is restarted on the same port before the next test.
* ``fake_server_factory``: ``make(kind, port=None, args=None) -> FakeServer`` for tests that
  kill/restart their own instance or need special command-line options; everything it started is
  stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from src.testing.fakes.launcher import FakeServer

FakeServerFactory = Callable[..., FakeServer]


@pytest.fixture(scope="session")
def _fake_ollama_process() -> Iterator[FakeServer]:
    server = FakeServer("ollama").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _fake_lmstudio_process() -> Iterator[FakeServer]:
    server = FakeServer("lmstudio").start()
    try:
        yield server
    finally:
        server.stop()


def _fresh(server: FakeServer) -> FakeServer:
    """Hand out the shared server in its default state (restarting it if a test killed it)."""
    if not server.is_running():
        server.start()
    server.reset()
    return server


@pytest.fixture
def fake_ollama(_fake_ollama_process: FakeServer) -> FakeServer:
    """Session-wide fake Ollama, reset to defaults for this test."""
    return _fresh(_fake_ollama_process)


@pytest.fixture
def fake_lmstudio(_fake_lmstudio_process: FakeServer) -> FakeServer:
    """Session-wide fake LM Studio, reset to defaults for this test."""
    return _fresh(_fake_lmstudio_process)


@pytest.fixture
def fake_server_factory() -> Iterator[FakeServerFactory]:
    """Start private fakes (``make("ollama", port=None, args=[...])``); stopped after the test."""
    started: list[FakeServer] = []

    def make(kind: str, port: int | None = None, args: list[str] | None = None) -> FakeServer:
        server = FakeServer(kind, port=port, args=args)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()
