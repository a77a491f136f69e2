"""The embedded model as the last resort, with a scripted stand-in (no llama.cpp needed):
waiting for it while it loads, and the guide's warning when it answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from src.core.config import DemiConfig
from src.llm import UnifiedLLMInference
from src.llm.errors import EmbeddedModelLoading
from src.llm.factory import build_providers
from src.llm.providers.base import Provider
from src.llm.types import ChatChunk, ChatRequest, HealthReport
from tests.conftest import HI, LogCapture, dead_url, llm_config

pytestmark = pytest.mark.timeout(60)


class LoadingModel(Provider):
    """Says it is loading on the first request, then answers once ``wait_ready`` is over."""

    kind = "embedded"

    def __init__(self) -> None:
        super().__init__("embedded", "Embedded", model="tiny", context_window=2048)
        self.loaded = False
        self.waited = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:  # type: ignore[override]
        if not self.loaded:
            raise EmbeddedModelLoading(self.name, "the model is still loading")
        yield ChatChunk("Hello from the embedded model.")
        yield ChatChunk("", done=True, finish_reason="stop")

    async def health(self) -> HealthReport:
        return HealthReport(healthy=True, latency=0.001)

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109
        self.waited += 1
        self.loaded = True
        return True

    async def close(self) -> None:
        return None


async def test_waits_for_a_loading_embedded_model_and_warns_when_it_answers(
    log: LogCapture,
) -> None:
    """Both servers down, the model still loading: the request waits for it (not a failure),
    it answers, and the guide's warning names the two servers that failed."""
    config = DemiConfig.from_mapping(llm_config(dead_url(), dead_url()))
    providers = {**build_providers(config, log.logger), "embedded": LoadingModel()}
    model = providers["embedded"]
    assert isinstance(model, LoadingModel)
    async with UnifiedLLMInference(config, log.logger, providers=providers) as llm:
        assert llm.chain == ["ollama", "lmstudio", "embedded"]
        result = await llm.chat_detailed(HI)
        status = llm.provider_status("embedded")
    assert (result.provider, result.fallback_used) == ("embedded", True)
    assert result.text == "Hello from the embedded model."
    assert model.waited == 1
    assert status["circuit"] == "closed"  # loading never counts against it
    assert log.count("[INFO] Embedded not ready: the model is still loading") == 1
    assert log.count(
        "[WARNING] Both Ollama and LMStudio providers failed; the embedded model is answering"
    ) == 1
