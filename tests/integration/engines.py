"""Embedded providers with test-sized settings, and stand-in engine commands.

Each provider here runs its own engine process. Restarts are quick (``restart_backoff``
0.2 s) so crash tests see the engine come back within seconds, and the model runs on one
thread so two engines can share a busy 2-core machine.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from src.core.config import DemiConfig
from src.llm.providers.base import Timeouts
from src.llm.providers.embedded import EmbeddedProvider, embedded_available

LOAD_TIMEOUT = 120.0


needs_embedded = pytest.mark.skipif(
    not embedded_available()[0], reason=str(embedded_available()[1])
)
"""Skips a module, saying how to fix it, when the embedded extra is missing. Looks for the
packages without importing llama.cpp: the tests' own process never loads the native library,
only the engine processes do."""


def make_provider(
    *, command: Any = None, timeout: float = 60, idle: float = 60, health: float = 2,
    logger: logging.Logger | None = None, **cfg: Any,
) -> EmbeddedProvider:
    """An embedded provider whose engine uses one thread and restarts after 0.2 s."""
    settings: dict[str, Any] = {
        "threads": 1, "restart_backoff": 0.2, "restart_backoff_max": 1.0, **cfg,
    }
    config = DemiConfig.from_mapping({"llm": {"embedded": settings}})
    return EmbeddedProvider(
        config.llm.embedded,
        first_token_timeout=timeout,
        timeouts=Timeouts(connect=2, read_idle=idle, health=health),
        logger=logger or logging.getLogger("demi.test.embedded"),
        command=command,
    )


def python_child(code: str) -> Any:
    """A stand-in engine: ``python -c CODE`` (it ignores the status pipe and socket)."""

    def build(status_fd: int, listen_fd: int) -> list[str]:
        return [sys.executable, "-c", code]

    return build
