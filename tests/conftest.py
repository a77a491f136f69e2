"""Shared test set-up: the fake-server fixtures plus helpers for scenario tests.

* ``make_llm(**overrides)`` builds a :class:`UnifiedLLMInference` pointed at the session fakes
  (or at given URLs) with short intervals, the embedded model disabled and a logger whose
  output the test can read (``log``).
* ``wait_until(cond)`` polls a condition up to a deadline: tests never sleep through an
  interval, they wait for the thing they expect to happen.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from src.llm import UnifiedLLMInference
from src.llm.clock import Clock, ManualClock
from src.testing.fakes.launcher import FakeServer, free_port
from tests.waiting import wait_until

pytest_plugins = ["tests.fakes.fixtures", "tests.skips"]

LOG_FORMAT = "[%(levelname)s] %(message)s"

OLLAMA_CHAT = "/api/chat"
OLLAMA_TAGS = "/api/tags"
LMSTUDIO_CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]
OLLAMA_REPLY = "Hello from fake-ollama."
LMSTUDIO_REPLY = "Hello from fake-lmstudio."


def dead_url() -> str:
    """A loopback URL nothing listens on: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


class LogCapture:
    """A private logger whose lines (``[LEVEL] message``) are kept in memory."""

    def __init__(self, name: str = "scenario.demi", level: int = logging.DEBUG) -> None:
        self.stream = io.StringIO()
        self.logger = logging.getLogger(name)
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
        self._handler = logging.StreamHandler(self.stream)
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self.logger.addHandler(self._handler)
        self.logger.setLevel(level)
        self.logger.propagate = False

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def count(self, line: str) -> int:
        """How many log lines are exactly ``line``."""
        return self.lines.count(line)

    def containing(self, fragment: str) -> list[str]:
        return [ln for ln in self.lines if fragment in ln]

    def close(self) -> None:
        self.logger.removeHandler(self._handler)
        self._handler.close()


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def llm_config(ollama_url: str, lmstudio_url: str, **overrides: Any) -> dict[str, Any]:
    """A config dict for tests: short bounds, embedded off; ``overrides`` are ``llm.*`` keys
    (nested dicts such as ``ollama={"timeout": 1}`` are merged, not replaced)."""
    base: dict[str, Any] = {
        "ollama": {"base_url": ollama_url, "timeout": 3.0},
        "lmstudio": {"base_url": lmstudio_url, "timeout": 3.0},
        "embedded": {"enabled": False},
        "discover": False,  # tests that want discovery say so (tests/discovery)
        "health_check_interval": 60,
        "probe_interval": 0.05,
        "health_check_timeout": 3.0,
        "connect_timeout": 2.0,
        "read_idle_timeout": 3.0,
    }
    return {"llm": deep_merge(base, overrides)}


def paths(server: FakeServer, path: str, method: str | None = None) -> list[dict[str, Any]]:
    """Requests the fake received on ``path`` (optionally with ``method``)."""
    return [
        r for r in server.requests()
        if r["path"] == path and (method is None or r["method"] == method)
    ]


def count(server: FakeServer, path: str) -> int:
    return len(paths(server, path))


class SteppingClock(ManualClock):
    """ManualClock whose ``step()`` first waits until the health monitor sleeps on it.

    Needed because the monitor computes a delay and only then starts ``clock.sleep`` in a new
    task; ``ManualClock.sleep`` anchors its deadline when that task first runs, so an
    ``advance()`` in between would be lost (see test_recovery's xfail clock test).
    """

    def has_sleeper(self) -> bool:
        return any(not fut.done() for _, fut in self._sleepers)

    async def step(self, seconds: float) -> None:
        await wait_until(self.has_sleeper, "the health monitor to sleep on the clock")
        self.advance(seconds)


@pytest.fixture
def log() -> Iterator[LogCapture]:
    """The log lines DEMI wrote during this test, in the guide's ``[LEVEL] message`` format."""
    capture = LogCapture()
    try:
        yield capture
    finally:
        capture.close()


MakeLLM = Callable[..., UnifiedLLMInference]


@pytest.fixture
def make_llm(request: pytest.FixtureRequest, log: LogCapture) -> MakeLLM:
    """``make_llm(ollama_at, lmstudio_at, clock=..., **llm_overrides)``.

    ``*_at`` are URLs or FakeServers; without them the session fakes are used. Overrides are
    ``llm.*`` keys (``ollama={"timeout": 1}`` merges into the Ollama block). Use as ``async with``.
    """

    def url(value: str | FakeServer | None, fixture: str) -> str:
        if value is None:
            value = request.getfixturevalue(fixture)
        return value.url if isinstance(value, FakeServer) else value

    def make(
        ollama_at: str | FakeServer | None = None,
        lmstudio_at: str | FakeServer | None = None,
        *,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> UnifiedLLMInference:
        config = llm_config(url(ollama_at, "fake_ollama"), url(lmstudio_at, "fake_lmstudio"),
                            **overrides)
        return UnifiedLLMInference(config, log.logger, clock=clock)

    return make
