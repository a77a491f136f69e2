"""Fixtures for the command-line tests: the fake upstreams and a CLI runner pointed at them."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.testing.fakes.launcher import FakeServer, free_port
from tests.cli.helpers import Demi


def pytest_configure(config: pytest.Config) -> None:
    """Register the fake-server fixtures (a no-op when the top-level conftest already did)."""
    config.pluginmanager.import_plugin("tests.fakes.fixtures")


@pytest.fixture
def demi(tmp_path: Path, fake_ollama: FakeServer, fake_lmstudio: FakeServer) -> Demi:
    """The CLI with both fakes up and reset, run from an empty temporary directory."""
    runner = Demi(tmp_path)
    # DEMI_PORT: a conductor some other process runs on 8420 must not answer `status`.
    runner.env.update(OLLAMA_BASE_URL=fake_ollama.url, LMSTUDIO_BASE_URL=fake_lmstudio.url,
                      DEMI_PORT=str(free_port()))
    return runner
