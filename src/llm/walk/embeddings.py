"""Embeddings over the provider chain: the same order as chat, failover, no breakers.

A provider takes part only if it has an embedding model configured (``embedding_model``);
the others are skipped, and if none has one the caller gets a 404 naming the keys to set.
A provider that fails is logged and the next one is asked, but nothing is counted against
its chat health: an embedding model missing on a server says nothing about its chat model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import ProviderError, RequestError
from ..report import LMSTUDIO, OLLAMA
from ..types import Embeddings
from .walker import ChainWalker


def embedding_key(name: str) -> str:
    """The config key that gives ``name`` an embedding model."""
    if name in (OLLAMA, LMSTUDIO):
        return f"llm.{name}.embedding_model"
    return f"embedding_model of llm.providers entry {name!r}"


def check_texts(texts: Any) -> list[str]:
    """The input as a list of strings, or RequestError (a 400) saying what is wrong."""
    if isinstance(texts, str) and texts:
        return [texts]
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts or not all(
        isinstance(t, str) for t in texts
    ):
        raise RequestError("input must be a string or a non-empty array of strings")
    return list(texts)


async def embed(walker: ChainWalker, texts: Sequence[str]) -> Embeddings:
    """Ask each provider with an embedding model, in the chain's order, until one answers."""
    order, preferred = walker.attempt_order(None)
    tried: list[str] = []
    errors: list[ProviderError] = []
    for name in order:
        provider = walker.pool[name].provider
        model = provider.embedding_model
        if not model:
            continue
        tried.append(name)
        try:
            got = await provider.embed(list(texts), model)
        except ProviderError as exc:
            walker.reporter.logger.warning(
                "%s could not make embeddings (%s); trying the next provider",
                provider.display_name, exc.reason,
            )
            errors.append(exc)
            continue
        # A fallback, as for chat: something preferred (with an embedding model) failed or
        # is down.
        ahead = preferred[: preferred.index(name)] if name in preferred else []
        if errors or any(
            walker.pool[n].provider.embedding_model and not walker.pool[n].usable for n in ahead
        ):
            return dataclasses.replace(got, fallback_used=True)
        return got
    if not tried:
        keys = " or ".join(embedding_key(n) for n in order)
        raise RequestError(
            f"no embedding model is configured for {', '.join(order)}: set {keys} "
            "(e.g. nomic-embed-text for Ollama)", status=404,
        )
    raise walker.reporter.all_failed(
        tried, errors, forced=walker._forced(), chain=walker.chain,
        fallback_enabled=walker.policy.fallback_enabled,
    )
