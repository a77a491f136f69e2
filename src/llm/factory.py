"""Building providers and the provider chain from configuration.

The chain is the failover order: ``llm.order`` when given, else ``llm.provider`` first and,
when ``llm.enable_fallback`` is on, every other configured provider after it (Ollama, LM
Studio, extra OpenAI-compatible servers, then the embedded model, always last).
"""

from __future__ import annotations

import logging

from src.core.config import DemiConfig, LLMConfig

from .provider import Provider, Timeouts
from .providers.lmstudio import LMStudioInference
from .providers.ollama import OllamaInference
from .providers.openai_compat import OpenAICompatProvider
from .report import EMBEDDED, LMSTUDIO, OLLAMA


def build_providers(config: DemiConfig, logger: logging.Logger) -> dict[str, Provider]:
    """One provider object per configured provider, keyed by name."""
    llm = config.llm
    timeouts = Timeouts.from_config(llm)
    providers: dict[str, Provider] = {
        OLLAMA: OllamaInference(llm.ollama, timeouts),
        LMSTUDIO: LMStudioInference(llm.lmstudio, timeouts),
    }
    for extra in llm.providers:
        providers[extra.name] = OpenAICompatProvider(
            extra.name, extra.name, base_url=extra.base_url, model=extra.model,
            api_key=extra.api_key, first_token_timeout=extra.timeout,
            temperature=extra.temperature, context_window=extra.context_window,
            timeouts=timeouts, region=extra.region, embedding_model=extra.embedding_model,
        )
    if llm.embedded.enabled:
        embedded = _build_embedded(config, logger)
        if embedded is not None:
            providers[EMBEDDED] = embedded
    return providers


def _build_embedded(config: DemiConfig, logger: logging.Logger) -> Provider | None:
    """The embedded provider, or None (with one clear log line) when its extra is missing."""
    from .providers.embedded import EmbeddedProvider, embedded_available

    ok, reason = embedded_available()
    if not ok:
        logger.info("Embedded model disabled: %s", reason)
        return None
    return EmbeddedProvider(
        config.llm.embedded,
        first_token_timeout=max(config.llm.ollama.timeout, config.llm.lmstudio.timeout),
        timeouts=Timeouts.from_config(config.llm),
        logger=logger,
    )


def resolve_chain(llm: LLMConfig, available: list[str]) -> list[str]:
    """The failover order over the providers that exist."""
    if llm.order:
        chain = [n for n in llm.order if n in available]
    else:
        rest = [n for n in available if n != llm.provider and n != EMBEDDED]
        chain = [llm.provider, *rest]
        if EMBEDDED in available and llm.provider != EMBEDDED:
            chain.append(EMBEDDED)
    chain = [n for n in chain if n in available]
    if not llm.enable_fallback:
        chain = chain[:1]
    return chain
