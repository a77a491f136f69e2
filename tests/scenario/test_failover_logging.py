"""The guide's log lines, verbatim, when the primary dies between two messages."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from src.core.config import DemiConfig
from src.core.logsetup import LOGGER_NAME, setup_logging
from src.llm import UnifiedLLMInference
from src.llm.clock import ManualClock
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_REPLY,
    OLLAMA_REPLY,
    LogCapture,
    MakeLLM,
    llm_config,
)
from tests.fakes.fixtures import FakeServerFactory

pytestmark = pytest.mark.timeout(60)

WARN = "[WARNING] Ollama inference failed: Connection refused"
SWITCHED = "[INFO] Switched to LMStudio provider"


@pytest.fixture
def demi_log_stream() -> Iterator[io.StringIO]:
    """setup_logging() at DEBUG into a StringIO; the ``demi`` logger is restored afterwards."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    debug = DemiConfig.defaults().logging.model_copy(update={"level": "DEBUG"})
    setup_logging(debug, stream=stream)
    try:
        yield stream
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


async def test_primary_killed_between_messages_fails_over_with_guide_log_lines(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_lmstudio: FakeServer,
    log: LogCapture,
) -> None:
    """Ollama killed between messages → LM Studio answers; WARNING then 'Switched to LMStudio'."""
    ollama = fake_server_factory("ollama")
    # A manual clock keeps background probes still, so the switch is the request's doing.
    async with make_llm(ollama, clock=ManualClock()) as llm:
        first = await llm.chat_detailed(HI)
        ollama.kill()
        second = await llm.chat_detailed(HI)
        assert llm.active_provider == "lmstudio"
    assert (first.provider, first.text) == ("ollama", OLLAMA_REPLY)
    assert (second.provider, second.text, second.fallback_used) == (
        "lmstudio", LMSTUDIO_REPLY, True,
    )
    assert second.attempts == (("ollama", "Connection refused"),)
    lines = log.lines
    assert lines.count("[INFO] Using Ollama provider") == 1  # once, at start
    assert lines.count(WARN) == 1 and lines.count(SWITCHED) == 1
    assert lines.index("[INFO] Using Ollama provider") < lines.index(WARN) < lines.index(SWITCHED)
    assert not log.containing("unavailable, switched")


async def test_setup_logging_writes_guide_lines_and_debug_per_request(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer, demi_log_stream: io.StringIO
) -> None:
    """setup_logging at DEBUG: '[INFO] Using Ollama provider' once, '[DEBUG] ...' per request."""
    logger = logging.getLogger(LOGGER_NAME)
    async with UnifiedLLMInference(llm_config(fake_ollama.url, fake_lmstudio.url), logger) as llm:
        for _ in range(3):
            await llm.chat(HI)
    lines = demi_log_stream.getvalue().splitlines()
    assert lines.count("[INFO] Using Ollama provider") == 1
    assert lines.count("[DEBUG] Using Ollama provider") == 3
    info, debug = "[INFO] Using Ollama provider", "[DEBUG] Using Ollama provider"
    assert lines.index(info) < lines.index(debug)


async def test_info_level_hides_per_request_debug_line(
    make_llm: MakeLLM, fake_ollama: FakeServer, log: LogCapture
) -> None:
    """At INFO the start-up line shows and the per-request DEBUG line does not."""
    log.logger.setLevel(logging.INFO)
    async with make_llm() as llm:
        await llm.chat(HI)
        await llm.chat(HI)
    assert log.lines.count("[INFO] Using Ollama provider") == 1
    assert not [ln for ln in log.lines if ln.startswith("[DEBUG]")]


async def test_slow_fallback_still_logs_request_caused_switch(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_lmstudio: FakeServer,
    log: LogCapture,
) -> None:
    """A slow-to-answer fallback does not change the guide's 'Switched to LMStudio' log line."""
    ollama = fake_server_factory("ollama")
    async with make_llm(ollama) as llm:
        await llm.chat(HI)
        ollama.kill()
        fake_lmstudio.control(first_token_delay=2.0)  # e.g. LM Studio loading its model
        result = await llm.chat_detailed(HI)
    assert result.provider == "lmstudio"
    lines = log.lines
    assert WARN in lines and SWITCHED in lines
    assert lines.index(WARN) < lines.index(SWITCHED)
