"""Every way an upstream can fail before the first token, and what DEMI makes of it.

Failures of the provider fail over; a server's refusal (400/422) sends the request to the
next provider without blaming anyone, and only when all refuse does the caller get it. LM Studio's
model choice and both of its error shapes are pinned here too.
"""

from __future__ import annotations

from typing import Any

import pytest

from src.llm import AllProvidersFailed, ProviderBusy, RequestError, RequestRejected
from src.testing.fakes.launcher import FakeServer
from tests.conftest import (
    HI,
    LMSTUDIO_CHAT,
    LMSTUDIO_REPLY,
    OLLAMA_CHAT,
    OLLAMA_REPLY,
    LogCapture,
    MakeLLM,
    SteppingClock,
    count,
    dead_url,
    paths,
)
from tests.fakes.fixtures import FakeServerFactory

pytestmark = pytest.mark.timeout(60)

LMS_MODEL = "qwen2.5-7b-instruct"
NO_MODELS = "No models loaded. Please load a model"


async def test_missing_ollama_model_is_unhealthy_and_names_ollama_pull(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Ollama without the configured model → unhealthy, reason names model and `ollama pull`."""
    fake_ollama.control(models=[])
    async with make_llm() as llm:
        health = await llm.health()
        result = await llm.chat_detailed(HI)
    ollama = health["ollama"]
    assert ollama["healthy"] is False and ollama["model_present"] is False
    assert "llama3.2:1b" in ollama["last_error"] and "ollama pull" in ollama["last_error"]
    assert (result.provider, result.text) == ("lmstudio", LMSTUDIO_REPLY)
    assert count(fake_ollama, OLLAMA_CHAT) == 0
    assert "[INFO] Ollama unavailable, switched to LMStudio provider" in log.lines


FAILURES: list[Any] = [
    pytest.param({"mode": "status", "status": 404}, "not found (run: ollama pull", id="404-model"),
    pytest.param({"mode": "status", "status": 500}, "HTTP 500", id="500"),
    pytest.param({"mode": "status", "status": 503}, "busy (503)", id="503-busy"),
    pytest.param({"mode": "status", "status": 429, "retry_after": 7}, "busy (429)", id="429"),
    pytest.param({"mode": "midstream_error", "after_chunks": 0}, "error in the middle",
                 id="error-line-before-text"),
    pytest.param({"mode": "malformed", "after_chunks": 0}, "malformed", id="malformed-json"),
    pytest.param({"mode": "cut", "after_chunks": 0}, "connection closed", id="cut-before-text"),
]


@pytest.mark.parametrize(("behaviour", "reason"), FAILURES)
async def test_ollama_failure_before_first_text_fails_over(
    behaviour: dict[str, Any], reason: str, make_llm: MakeLLM, fake_ollama: FakeServer,
    fake_lmstudio: FakeServer, log: LogCapture,
) -> None:
    """An Ollama failure before any text → LM Studio answers, the reason is logged and reported."""
    fake_ollama.control(**behaviour)
    async with make_llm() as llm:
        result = await llm.chat_detailed(HI)
    assert (result.provider, result.text, result.fallback_used) == (
        "lmstudio", LMSTUDIO_REPLY, True,
    )
    assert len(result.attempts) == 1 and result.attempts[0][0] == "ollama"
    assert reason in result.attempts[0][1]
    assert count(fake_ollama, OLLAMA_CHAT) == 1
    warnings = log.containing("[WARNING] Ollama inference failed: ")
    assert len(warnings) == 1 and reason in warnings[0]


async def test_a_server_400_is_its_answer_and_the_next_provider_is_asked(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Ollama answers 400: LM Studio serves the request; Ollama is not blamed (circuit
    closed, no failure, still the active provider) and it is no fallback."""
    fake_ollama.control(mode="status", status=400, times=1)
    async with make_llm() as llm:
        result = await llm.chat_detailed(HI)
        status = llm.provider_status("ollama")
        active = llm.active_provider
        after = await llm.chat_detailed(HI)
    assert (result.provider, result.text, result.fallback_used) == (
        "lmstudio", LMSTUDIO_REPLY, False)
    assert status["circuit"] == "closed" and status["stats"]["failures"] == 0
    assert status["stats"]["rejections"] == 1
    assert active == "ollama"
    assert (after.provider, after.text) == ("ollama", OLLAMA_REPLY)
    assert not log.containing("inference failed")
    assert log.count("[INFO] Ollama refused the request (HTTP 400); asking the next provider") == 1


async def test_every_provider_refusing_is_the_callers_rejection_with_each_reason(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Both servers answer 400/422: RequestRejected (a 4xx) naming each one's reason; no
    circuit opens and no retry round follows."""
    fake_lmstudio.control(mode="status", status=400, message="'temperature' must be <= 2")
    fake_ollama.control(mode="status", status=422, message="bad option")
    async with make_llm(provider="lmstudio") as llm:
        with pytest.raises(RequestRejected) as info:
            await llm.chat(HI)
        circuits = [llm.provider_status(n)["circuit"] for n in ("lmstudio", "ollama")]
    assert "temperature" in str(info.value) and "bad option" in str(info.value)
    assert info.value.status == 400
    assert circuits == ["closed", "closed"]
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 1 and count(fake_ollama, OLLAMA_CHAT) == 1


async def test_lmstudio_429_retry_after_fails_over_and_is_reported(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """LM Studio 429 + Retry-After: fails over to Ollama; pinned, the error has retry_after."""
    fake_lmstudio.control(mode="status", status=429, retry_after=7)
    async with make_llm(provider="lmstudio") as llm:
        result = await llm.chat_detailed(HI)
        llm.force_provider("lmstudio")
        with pytest.raises(AllProvidersFailed) as info:
            await llm.chat(HI)
    assert result.provider == "ollama" and "busy (429)" in result.attempts[0][1]
    (error,) = info.value.errors
    assert isinstance(error, ProviderBusy) and error.retry_after == 7.0


async def test_lmstudio_without_configured_model_uses_the_loaded_one(
    make_llm: MakeLLM, fake_lmstudio: FakeServer
) -> None:
    """No llm.lmstudio.model: the chat names the model LM Studio has loaded, not the first one."""
    # jit: /v1/models lists every downloaded model, the loaded one last.
    fake_lmstudio.control(models=["alpha-7b-instruct", "beta-3b-instruct"],
                          loaded=["beta-3b-instruct"], jit=True)
    async with make_llm(dead_url()) as llm:  # Ollama down: the real fallback path
        result = await llm.chat_detailed(HI)
    (chat,) = paths(fake_lmstudio, LMSTUDIO_CHAT)
    assert chat["json"]["model"] == "beta-3b-instruct"
    assert (result.provider, result.model) == ("lmstudio", "beta-3b-instruct")


async def test_lmstudio_loaded_model_from_command_line(
    make_llm: MakeLLM, fake_server_factory: FakeServerFactory, fake_ollama: FakeServer
) -> None:
    """An LM Studio started with --loaded serves DEMI's request with that model."""
    lmstudio = fake_server_factory(
        "lmstudio",
        args=["--model", "a-model", "--model", "b-model", "--loaded", "b-model", "--jit"],
    )
    async with make_llm(fake_ollama, lmstudio) as llm:
        llm.force_provider("lmstudio")
        await llm.chat(HI)
    (chat,) = paths(lmstudio, LMSTUDIO_CHAT)
    assert chat["json"]["model"] == "b-model"


async def test_lmstudio_configured_model_is_sent(
    make_llm: MakeLLM, fake_lmstudio: FakeServer
) -> None:
    """A configured llm.lmstudio.model is the model the chat request names."""
    fake_lmstudio.control(models=["mine", LMS_MODEL], loaded=["mine", LMS_MODEL])
    async with make_llm(dead_url(), lmstudio={"model": "mine"}) as llm:
        await llm.chat(HI)
    (chat,) = paths(fake_lmstudio, LMSTUDIO_CHAT)
    assert chat["json"]["model"] == "mine"


@pytest.mark.parametrize("shape", ["string", "object"])
async def test_lmstudio_error_shapes_map_to_clear_reasons(
    shape: str, make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """Both `{"error": "text"}` and `{"error": {"message": ...}}` become 'HTTP 500: text'."""
    fake_lmstudio.control(mode="status", status=500, message="GPU fell off the bus",
                          error_shape=shape)
    async with make_llm() as llm:
        llm.force_provider("lmstudio")
        with pytest.raises(AllProvidersFailed) as info:
            await llm.chat(HI)
    (error,) = info.value.errors
    assert error.reason == "HTTP 500: GPU fell off the bus"
    assert "pinned with force_provider" in str(info.value)
    assert "LMStudio: HTTP 500: GPU fell off the bus" in str(info.value)


@pytest.mark.parametrize("shape", ["string", "object"])
async def test_lmstudio_no_models_loaded_in_either_shape_fails_over(
    shape: str, make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """LM Studio's 400 'No models loaded' (either shape) is a provider problem: it fails over."""
    async with make_llm(provider="lmstudio") as llm:
        fake_lmstudio.control(loaded=[], error_shape=shape)  # unloaded after DEMI started
        result = await llm.chat_detailed(HI)
    assert (result.provider, result.text) == ("ollama", OLLAMA_REPLY)
    ((name, reason),) = result.attempts
    assert name == "lmstudio"
    assert NO_MODELS in reason and LMS_MODEL in reason
    assert "{" not in reason  # the message, not a dict's repr


async def test_retry_after_keeps_chats_away_until_it_elapses(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """After a 429 with Retry-After: 30, no chat goes to that server for 30 s, probes or not."""
    fake_lmstudio.control(mode="status", status=429, retry_after=30)  # keeps rate-limiting
    clock = SteppingClock()
    async with make_llm(provider="lmstudio", clock=clock) as llm:
        first = await llm.chat_detailed(HI)
        for _ in range(2):  # 2 s pass; LM Studio's model list would answer fine
            await clock.step(1.0)
        assert llm.provider_status("lmstudio")["circuit"] == "open"  # held by Retry-After
        later = await llm.chat_detailed(HI)
    assert first.provider == "ollama" and later.provider == "ollama"
    assert count(fake_lmstudio, LMSTUDIO_CHAT) == 1  # only the request that got the 429


@pytest.mark.parametrize(
    ("messages", "options"),
    [
        pytest.param([], {}, id="no-messages"),
        pytest.param([{"role": "wizard", "content": "hi"}], {}, id="bad-role"),
        pytest.param(HI, {"temperature": 5}, id="temperature-out-of-range"),
        pytest.param(HI, {"max_tokens": 0}, id="max-tokens-zero"),
    ],
)
async def test_bad_caller_input_never_reaches_a_provider(
    messages: Any, options: dict[str, Any], make_llm: MakeLLM, fake_ollama: FakeServer,
    fake_lmstudio: FakeServer,
) -> None:
    """Input DEMI can reject itself raises RequestError before any upstream chat request."""
    async with make_llm() as llm:
        with pytest.raises(RequestError):
            await llm.chat(messages, **options)
        circuits = {n: llm.provider_status(n)["circuit"] for n in ("ollama", "lmstudio")}
    assert circuits == {"ollama": "closed", "lmstudio": "closed"}
    assert count(fake_ollama, OLLAMA_CHAT) == 0 and count(fake_lmstudio, LMSTUDIO_CHAT) == 0


async def test_all_busy_once_then_another_round_answers(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Both 503 once: every provider is tried before Ollama again, after a logged backoff."""
    fake_ollama.control(mode="status", status=503, times=1)
    fake_lmstudio.control(mode="status", status=503, times=1)
    async with make_llm(retry={"attempts": 1, "backoff": 0.01, "backoff_max": 0.02,
                               "deadline": 30}) as llm:
        result = await llm.chat_detailed(HI)
    assert result.provider in ("ollama", "lmstudio")
    assert count(fake_ollama, OLLAMA_CHAT) + count(fake_lmstudio, LMSTUDIO_CHAT) == 3
    assert log.containing("Every provider failed for now; trying them again in")


async def test_retry_after_sets_the_wait_before_the_next_round(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer, log: LogCapture
) -> None:
    """Both 429 with Retry-After: 1: the next round waits that second, not the short backoff."""
    fake_ollama.control(mode="status", status=429, retry_after=1, times=1)
    fake_lmstudio.control(mode="status", status=429, retry_after=1, times=1)
    async with make_llm(retry={"attempts": 1, "backoff": 0.01, "backoff_max": 0.02,
                               "deadline": 30}) as llm:
        await llm.chat_detailed(HI)
    assert log.containing("trying them again in 1.00s (round 2)")


async def test_no_retry_rounds_with_attempts_zero(
    make_llm: MakeLLM, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """retry.attempts 0: both busy means AllProvidersFailed after one round."""
    fake_ollama.control(mode="status", status=503)
    fake_lmstudio.control(mode="status", status=503)
    async with make_llm(retry={"attempts": 0, "backoff": 0.01, "backoff_max": 0.02,
                               "deadline": 30}) as llm:
        with pytest.raises(AllProvidersFailed):
            await llm.chat(HI)
    assert count(fake_ollama, OLLAMA_CHAT) == 1 and count(fake_lmstudio, LMSTUDIO_CHAT) == 1
