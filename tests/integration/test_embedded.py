"""The embedded provider against the real Gemma 3 270M model in its engine process.

Nothing here is mocked except the "extra not installed" path, which is pure logic. The
model is tiny, so the tests check that text arrives and streams, never what it says. One
provider (one engine process) is shared by the module (``queue_size=1`` so the busy path is
reachable); tests that kill or break engines use their own (tests/integration/test_engine.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

# Imported before src.core.config on purpose: the llm package must initialise first.
import src.llm.providers.embedded as embedded
from src.llm.errors import (
    EmbeddedModelLoading,
    ModelNotFound,
    ProviderBusy,
    ProviderUnavailable,
)
from src.llm.providers.embedded import EmbeddedProvider, embedded_available
from src.llm.providers.gguf import default_cache_dir, render_prompt, resolve_model_file
from src.llm.types import ChatChunk, ChatRequest, HealthReport
from tests.integration.engines import make_provider, needs_embedded

pytestmark = [pytest.mark.integration, needs_embedded]

SHARED = pytest.mark.asyncio(loop_scope="module")
LOAD_TIMEOUT = 120.0


def ask(text: str, *, max_tokens: int = 12, **options: object) -> ChatRequest:
    """A one-turn greedy request, so a run reproduces on the same build."""
    return ChatRequest(
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        temperature=0.0,
        options=options,
    )


LONG = ask("Count from 1 to 100.", max_tokens=64)
"""Greedy, this prompt runs to the token limit: a generation that stays busy for a while."""


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Yield to the loop until ``condition`` holds; fail if it has not within ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def settle(provider: EmbeddedProvider) -> None:
    """Wait until the worker has released every slot (it checks for cancellation per token)."""
    await until(lambda: provider.in_flight == 0)


async def first_chunk(stream: AsyncIterator[ChatChunk]) -> ChatChunk:
    return await anext(stream)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded() -> AsyncIterator[tuple[EmbeddedProvider, HealthReport]]:
    """The shared provider, loaded, with the health report seen before the load finished."""
    provider = make_provider(context_window=512, max_tokens=64, queue_size=1)
    first = await provider.health()
    assert await provider.wait_ready(LOAD_TIMEOUT), (await provider.health()).error
    yield provider, first
    await provider.close()


@pytest.fixture
def provider(loaded: tuple[EmbeddedProvider, HealthReport]) -> EmbeddedProvider:
    return loaded[0]


@SHARED
async def test_loading_is_reported_then_healthy(
    loaded: tuple[EmbeddedProvider, HealthReport],
) -> None:
    """The first probe starts the load and says "loading"; once loaded the probe is healthy."""
    provider, first = loaded
    assert (first.healthy, first.loading) == (False, True)
    report = await provider.health()
    assert report.healthy and not report.loading and report.error is None
    assert report.model_present is True
    assert report.models == (provider.model,)
    assert report.latency < 0.5


@SHARED
async def test_stream_yields_text_then_a_done_chunk_with_counts(provider: EmbeddedProvider) -> None:
    """A reply streams as text chunks and ends with one done chunk carrying real token counts."""
    chunks = await collect(provider.stream(ask("What is the capital of France?")))
    *texts, last = chunks
    assert any(c.text for c in texts) and not any(c.done for c in texts)
    assert last.done and last.text == ""
    assert last.finish_reason in ("stop", "length")
    assert last.completion_tokens is not None and last.completion_tokens >= 1
    assert last.prompt_tokens is not None and last.prompt_tokens > 5
    assert last.model == provider.model


@SHARED
async def test_chat_returns_text(provider: EmbeddedProvider) -> None:
    """chat() drains the stream into one reply with text."""
    reply = await provider.chat(ask("Say hello."))
    assert reply.done and reply.text.strip()
    assert reply.completion_tokens is not None and reply.completion_tokens >= 1


@SHARED
async def test_max_tokens_ends_the_reply_with_length(provider: EmbeddedProvider) -> None:
    """A reply cut by max_tokens reports finish_reason "length" and exactly that many tokens."""
    chunks = await collect(provider.stream(ask("Count from 1 to 100.", max_tokens=5)))
    assert chunks[-1].finish_reason == "length"
    # Counted by re-tokenizing the text sent (see engine/child.py): within one of the 5.
    assert chunks[-1].completion_tokens is not None
    assert 4 <= chunks[-1].completion_tokens <= 6


@SHARED
async def test_full_queue_raises_busy(provider: EmbeddedProvider) -> None:
    """With one request generating and one waiting (queue_size=1), a third is refused at once."""
    running = provider.stream(LONG)
    waiting = provider.stream(ask("Say hello."))
    refused = provider.stream(ask("Say hello."))
    async with contextlib.aclosing(running), contextlib.aclosing(waiting):
        first = await anext(running)  # the long generation is under way
        assert first.text and provider.in_flight == 1
        queued = asyncio.create_task(first_chunk(waiting))
        await until(lambda: provider.in_flight == 2)  # admitted on its first step
        with pytest.raises(ProviderBusy):
            await anext(refused)
        rest = await collect(running)
        assert rest[-1].done
        assert (await queued).text  # the queued request is served once the slot frees
    await settle(provider)


@SHARED
async def test_closing_a_stream_early_frees_the_slot(provider: EmbeddedProvider) -> None:
    """Abandoning a reply after one chunk stops generation and the next request is served."""
    stream = provider.stream(LONG)
    async with contextlib.aclosing(stream):
        assert (await anext(stream)).text
    await settle(provider)
    reply = await provider.chat(ask("Say hello."))
    assert reply.text


@SHARED
async def test_cancelled_consumer_frees_the_slot(provider: EmbeddedProvider) -> None:
    """Cancelling the task that reads a stream frees the slot too."""

    async def read_all() -> None:
        await collect(provider.stream(LONG))

    task = asyncio.create_task(read_all())
    await until(lambda: provider.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(provider)
    assert (await provider.chat(ask("Say hello."))).text


@SHARED
async def test_overlong_conversation_is_trimmed_to_fit(provider: EmbeddedProvider) -> None:
    """A conversation far over the context window still gets a reply, from a prompt that fits."""
    filler = "the quick brown fox jumps over the lazy dog " * 12
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}: {filler}"}
        for i in range(30)
    ]
    messages = [{"role": "system", "content": "Be brief."}, *history]
    messages.append({"role": "user", "content": "Say hello."})
    last = (await collect(provider.stream(ChatRequest(messages=messages, max_tokens=8))))[-1]
    assert last.done and last.prompt_tokens is not None
    assert last.prompt_tokens <= provider.context_window - 8

    one_huge = ChatRequest(messages=[{"role": "user", "content": filler * 20}], max_tokens=8)
    last = (await collect(provider.stream(one_huge)))[-1]
    assert last.done and last.prompt_tokens is not None
    assert last.prompt_tokens <= provider.context_window - 8


@pytest.mark.asyncio
async def test_missing_model_file_is_unhealthy(tmp_path: Path) -> None:
    """A configured model path that does not exist: unhealthy with the reason, ModelNotFound."""
    provider = make_provider(model_path=str(tmp_path / "absent.gguf"))
    try:
        assert not await provider.wait_ready(LOAD_TIMEOUT)
        report = await provider.health()
        assert not report.healthy and not report.loading
        assert report.error is not None and "does not exist" in report.error
        assert "failed to start" in report.error
        with pytest.raises(ModelNotFound):
            await collect(provider.stream(ask("Say hello.")))
    finally:
        await provider.close()


@pytest.mark.asyncio
async def test_corrupt_model_file_is_unhealthy(tmp_path: Path) -> None:
    """A file that is not a GGUF model: unhealthy with a load-failure reason, not a crash."""
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    provider = make_provider(model_path=str(bad))
    try:
        assert not await provider.wait_ready(LOAD_TIMEOUT)
        report = await provider.health()
        assert not report.healthy and not report.loading and report.model_present is False
        assert report.error is not None and "failed to load" in report.error
        with pytest.raises(ProviderUnavailable, match="failed to load"):
            await collect(provider.stream(ask("Say hello.")))
    finally:
        await provider.close()


def test_missing_extra_disables_the_provider_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without llama_cpp no embedded provider is built; one log line says how to install it."""
    import logging

    from src.core.config import DemiConfig
    from src.llm.factory import build_providers

    reason = embedded.INSTALL_HINT
    monkeypatch.setattr(embedded, "embedded_available", lambda model_path=None: (False, reason))
    with caplog.at_level(logging.INFO):
        built = build_providers(DemiConfig.from_mapping({}), logging.getLogger("t"))
    assert "embedded" not in built
    assert any("pip install -e '.[embedded]'" in r.getMessage() for r in caplog.records)


def test_embedded_available_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """embedded_available() is (True, None) here, and names the missing package otherwise."""
    assert embedded_available() == (True, None)
    real = embedded.importlib.util.find_spec
    monkeypatch.setattr(
        embedded.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    ok, reason = embedded_available()
    assert not ok and reason is not None
    assert reason.startswith(embedded.INSTALL_HINT) and "llama-cpp-python" in reason


@pytest.mark.asyncio
async def test_stream_while_loading_raises_loading_and_close_is_clean() -> None:
    """Before the engine is ready stream() defers to other providers; close() ends the engine."""
    import psutil

    provider = make_provider(context_window=256)
    await provider.start()
    with pytest.raises(EmbeddedModelLoading):
        await collect(provider.stream(ask("Say hello.")))
    assert await provider.wait_ready(LOAD_TIMEOUT)
    pid = provider.engine_pid
    assert pid is not None and psutil.pid_exists(pid)
    await provider.close()
    await provider.close()  # idempotent
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    report = await provider.health()
    assert not report.healthy and report.error is not None and "closed" in report.error
    with pytest.raises(ProviderUnavailable):
        await collect(provider.stream(ask("Say hello.")))


def test_model_file_is_assembled_once_and_reused() -> None:
    """The bundled GGUF is assembled into the cache once; later runs reuse it, no leftovers."""
    first = resolve_model_file(None, None)
    stamp = first.stat().st_mtime_ns
    again = resolve_model_file(None, None)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.parent == default_cache_dir() and first.stat().st_size > 100_000_000
    assert not list(first.parent.glob("*.partial"))


def test_prompt_renders_system_then_turns() -> None:
    """The chat renders as system text then ROLE: turns ending in ASSISTANT:."""
    parts = render_prompt(
        [
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert parts.render() == "Be brief.\n\nUSER: Hi\nASSISTANT: Hello\nUSER: Bye\nASSISTANT:"
    assert parts.render(2) == "Be brief.\n\nUSER: Bye\nASSISTANT:"


def test_edge_space_trims_only_the_ends() -> None:
    """Leading space is dropped, inner space kept, trailing space held until text follows."""
    trim = embedded._EdgeSpace()
    shown = [trim.feed(p) for p in (" ", " Sure", ", ", "bye", ".\n", "\n")]
    assert "".join(shown) == "Sure, bye."
