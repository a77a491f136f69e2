"""Building providers and the provider chain from configuration.

The chain is the failover order: ``llm.order`` when given, else ``llm.provider`` first and,
when ``llm.enable_fallback`` is on, every other configured provider after it (Ollama, LM
Studio, extra OpenAI-compatible servers, then the embedded model, always last).
"""

from __future__ import annotations

import logging

from ..core.config import DemiConfig, LLMConfig, OllamaConfig, ProviderEntry
from .providers.base import Provider, Timeouts
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
        providers[extra.name] = build_entry(extra, timeouts)
    if llm.embedded.enabled:
        embedded = _build_embedded(config, logger)
        if embedded is not None:
            providers[EMBEDDED] = embedded
    return providers


def build_entry(entry: ProviderEntry, timeouts: Timeouts) -> Provider:
    """The provider for one ``llm.providers`` entry, of the kind it names."""
    if entry.kind == "ollama":
        # Take every key OllamaConfig declares from the entry, so keys added to llm.ollama
        # later (and mirrored on entries) reach extra Ollama servers too.
        fields = entry.model_dump()
        cfg = OllamaConfig.model_validate(
            {k: fields[k] for k in OllamaConfig.model_fields if k in fields}
        )
        return OllamaInference(cfg, timeouts, name=entry.name, display_name=entry.name)
    return OpenAICompatProvider(
        entry.name, entry.name, base_url=entry.base_url, model=entry.model,
        api_key=entry.api_key, first_token_timeout=entry.timeout,
        temperature=entry.temperature, context_window=entry.context_window,
        timeouts=timeouts, region=entry.region, embedding_model=entry.embedding_model,
    )


def provider_caps(llm: LLMConfig) -> dict[str, int | None]:
    """``max_concurrency`` of every configured provider (None: learn it, else no cap); the
    embedded engine's is 1 unless configured, what it really runs at once."""
    caps: dict[str, int | None] = {
        OLLAMA: llm.ollama.max_concurrency, LMSTUDIO: llm.lmstudio.max_concurrency,
        EMBEDDED: llm.embedded.max_concurrency or 1,
    }
    caps.update({p.name: p.max_concurrency for p in llm.providers})
    return caps


def provider_weights(llm: LLMConfig) -> dict[str, float]:
    """Round-robin weight of every configured provider (1 unless configured)."""
    weights = {name: 1.0 for name in llm.provider_names()}
    weights.update(llm.routing.weights)
    weights.update({p.name: p.weight for p in llm.providers})
    return weights


def last_resort(chain: list[str]) -> frozenset[str]:
    """Providers no strategy may move ahead of the others: the embedded model while it is
    last in the chain (a tiny model is a last resort, not a third of the traffic). An
    ``llm.order`` that puts it elsewhere makes it an ordinary member of the rotation."""
    if len(chain) > 1 and chain[-1] == EMBEDDED:
        return frozenset({EMBEDDED})
    return frozenset()


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
