"""Requests a provider cannot express: skipped without blame, and the embedded model never
answers a request with tools or images as if they were not there."""

from __future__ import annotations

from typing import Any

import pytest

from src.core.config import DemiConfig
from src.llm import UnifiedLLMInference
from src.llm.errors import AllProvidersFailed, CannotExpress, RequestError
from src.llm.factory import build_providers
from src.llm.providers._translate import check_text_only
from src.llm.providers.base import Timeouts
from src.llm.providers.embedded import EmbeddedProvider
from src.llm.types import ChatRequest
from src.testing.scripted import Reply, ScriptedProvider
from tests.conftest import HI, LogCapture, dead_url, llm_config

pytestmark = pytest.mark.timeout(60)
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
IMAGE = [{"role": "user", "content": "what is it?", "images": ["iVBORw0KGgo="]}]


def text_only_model() -> ScriptedProvider:
    """A stand-in for the embedded model: the same check first, then a text answer."""
    return ScriptedProvider("embedded", then=Reply("plain text"), kind="embedded",
                            display_name="Embedded model",
                            check=lambda request: check_text_only(request, "the embedded model"))


def embedded(log: LogCapture) -> EmbeddedProvider:
    config = DemiConfig.from_mapping({})
    return EmbeddedProvider(config.llm.embedded, first_token_timeout=1,
                            timeouts=Timeouts.from_config(config.llm), logger=log.logger,
                            command=lambda port, parent: ["false"])


@pytest.mark.parametrize(("options", "messages", "field"), [
    ({"tools": TOOLS}, HI, "tools"),
    ({}, IMAGE, "messages[0].images"),
    ({}, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
     "messages[0].content[0]"),
])
async def test_embedded_provider_cannot_express_tools_or_images(
    log: LogCapture, options: dict[str, Any], messages: list[Any], field: str
) -> None:
    """EmbeddedProvider refuses before touching its engine, naming the field."""
    provider = embedded(log)
    with pytest.raises(CannotExpress) as info:
        await provider.stream(ChatRequest(messages=messages, options=options)).__anext__()
    assert info.value.field == field
    await provider.close()


async def test_tool_choice_none_is_text_for_the_embedded_model(log: LogCapture) -> None:
    """tool_choice "none" offers no tools: the embedded model may take it (here: not ready)."""
    provider = embedded(log)
    request = ChatRequest(messages=HI, options={"tools": TOOLS, "tool_choice": "none"})
    with pytest.raises(Exception) as info:
        await provider.stream(request).__anext__()
    assert not isinstance(info.value, CannotExpress)
    await provider.close()


async def test_servers_down_a_tools_request_is_not_answered_by_the_embedded_model(
    log: LogCapture,
) -> None:
    """Both servers down and tools asked for: 503 with their reasons, the text-only model is
    not asked, and its circuit stays closed."""
    config = DemiConfig.from_mapping(llm_config(dead_url(), dead_url()))
    model = text_only_model()
    providers = {**build_providers(config, log.logger), "embedded": model}
    async with UnifiedLLMInference(config, log.logger, providers=providers) as llm:
        with pytest.raises(AllProvidersFailed):
            await llm.chat(HI, tools=TOOLS)
        assert model.counts.finished == 0
        assert llm.provider_status("embedded")["circuit"] == "closed"
        assert await llm.chat(HI) == "plain text"  # a plain request it does take


async def test_only_the_embedded_model_and_tools_is_a_400_naming_tools(
    log: LogCapture,
) -> None:
    """Nobody in the chain can call tools: RequestError naming tools, nothing counted."""
    config = DemiConfig.from_mapping(llm_config(dead_url(), dead_url()))
    model = text_only_model()
    async with UnifiedLLMInference(config, log.logger,
                                   providers={"embedded": model}) as llm:
        with pytest.raises(RequestError, match="tools"):
            await llm.chat(HI, tools=TOOLS)
        assert llm.registry["embedded"].stats.failures == 0
        assert llm.provider_status("embedded")["circuit"] == "closed"
