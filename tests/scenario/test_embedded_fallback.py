"""The embedded model as the last resort, with a scripted stand-in (no llama.cpp needed):
waiting for it while it loads, and the guide's warning when it answers."""

from __future__ import annotations

import pytest

from src.core.config import DemiConfig
from src.llm import UnifiedLLMInference
from src.llm.errors import EmbeddedModelLoading
from src.llm.factory import build_providers
from src.testing.scripted import Fail, Reply, ScriptedProvider
from tests.conftest import HI, LogCapture, dead_url, llm_config

pytestmark = pytest.mark.timeout(60)


def loading_model() -> ScriptedProvider:
    """Says it is loading on the first request, then answers once ``wait_ready`` is over."""
    return ScriptedProvider(
        "embedded", Fail(EmbeddedModelLoading, "the model is still loading"),
        then=Reply("Hello from the embedded model."), display_name="Embedded", kind="embedded")


async def test_waits_for_a_loading_embedded_model_and_warns_when_it_answers(
    log: LogCapture,
) -> None:
    """Both servers down, the model still loading: the request waits for it (not a failure),
    it answers, and the guide's warning names the two servers that failed."""
    config = DemiConfig.from_mapping(llm_config(dead_url(), dead_url()))
    model = loading_model()
    providers = {**build_providers(config, log.logger), "embedded": model}
    async with UnifiedLLMInference(config, log.logger, providers=providers) as llm:
        assert llm.chain == ["ollama", "lmstudio", "embedded"]
        result = await llm.chat_detailed(HI)
        status = llm.provider_status("embedded")
    assert (result.provider, result.fallback_used) == ("embedded", True)
    assert result.text == "Hello from the embedded model."
    assert model.counts.waited_ready == 1
    assert status["circuit"] == "closed"  # loading never counts against it
    assert log.count("[INFO] Embedded not ready: the model is still loading") == 1
    assert log.count(
        "[WARNING] Both Ollama and LMStudio providers failed; the embedded model is answering"
    ) == 1
