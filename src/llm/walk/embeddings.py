"""Embeddings over the provider chain: the strategy's ranking, failover, no breakers.

A provider takes part only if it has an embedding model configured (``embedding_model``);
the others are skipped, and if none has one the caller gets a 404 naming the keys to set.
A provider that fails is logged and the next one is asked, but nothing is counted against
its chat health: an embedding model missing on a server says nothing about its chat model.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..errors import ProviderError, RequestError
from ..options import ChatOptions
from ..providers.base import Provider
from ..report import LMSTUDIO, OLLAMA
from ..types import Embeddings
from .attempt import Attempt
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


async def _vectors(provider: Provider, texts: list[str], model: str) -> AsyncIterator[Embeddings]:
    """An embeddings call as a one-item stream, so it runs as an :class:`Attempt` too."""
    yield await provider.embed(texts, model)


async def embed(walker: ChainWalker, texts: Sequence[str]) -> Embeddings:
    """Ask each provider with an embedding model, in the strategy's ranking, until one
    answers. Embeddings follow the ranking, not a per-request choice: they never advance a
    rotation or a canary's share, which are about chat traffic."""
    route = walker.route([], ChatOptions(), choose=False)
    order = route.attempts(walker.registry)
    tried: list[str] = []
    errors: list[ProviderError] = []
    for name in order:
        provider = walker.registry[name].provider
        model = provider.embedding_model
        if not model:
            continue
        tried.append(name)
        vectors = functools.partial(_vectors, provider, list(texts), model)
        serve = functools.partial(walker.registry.serve, name)
        async with Attempt(name, provider, vectors, serve=serve) as attempt:
            await attempt.wait()
        if attempt.first is not None:
            return _with_fallback_flag(walker, route.order, name, errors, attempt.first)
        if isinstance(attempt.error, ProviderError):
            walker.reporter.logger.warning(
                "%s could not make embeddings (%s); trying the next provider",
                provider.display_name, attempt.error.reason,
            )
            errors.append(attempt.error)
            continue
        assert attempt.error is not None
        raise attempt.error  # the caller's request (or a provider that makes none): a 4xx
    if not tried:
        keys = " or ".join(embedding_key(n) for n in order)
        raise RequestError(
            f"no embedding model is configured for {', '.join(order)}: set {keys} "
            "(e.g. nomic-embed-text for Ollama)", status=404,
        )
    raise walker.reporter.all_failed(
        tried, errors, forced=walker.forced, chain=walker.chain,
        fallback_enabled=walker.policy.fallback_enabled,
    )


def _with_fallback_flag(
    walker: ChainWalker, preferred: list[str], name: str, errors: list[ProviderError],
    got: Embeddings,
) -> Embeddings:
    """A fallback, as for chat: something preferred (with an embedding model) failed or is
    down."""
    ahead = preferred[: preferred.index(name)] if name in preferred else []
    if errors or any(
        walker.registry[n].provider.embedding_model and not walker.registry[n].usable
        for n in ahead
    ):
        return dataclasses.replace(got, fallback_used=True)
    return got
