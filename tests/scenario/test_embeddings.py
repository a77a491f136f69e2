"""Embeddings through the library: the chain's order, skipping, failover without blame,
and an extra OpenAI-compatible provider's own embedding_model."""

from __future__ import annotations

import pytest

from src.llm.errors import AllProvidersFailed, RequestError
from src.testing.fakes.abilities import embedding
from src.testing.fakes.launcher import FakeServer
from tests.conftest import LogCapture, MakeLLM, dead_url

pytestmark = pytest.mark.timeout(60)
EMBED = "text-embedding-nomic-embed-text-v1.5"


async def test_extra_provider_with_its_own_embedding_model(
    make_llm: MakeLLM, fake_lmstudio: FakeServer
) -> None:
    """Ollama down, LM Studio without an embedding model: the extra provider embeds."""
    fake_lmstudio.control(models=["qwen2.5-7b-instruct", EMBED])
    async with make_llm(dead_url(), fake_lmstudio, providers=[
            {"name": "box", "base_url": fake_lmstudio.url, "embedding_model": EMBED}],
            ollama={"embedding_model": "nomic-embed-text"}) as llm:
        got = await llm.embed(["a", "b"])
        assert (got.provider, got.model, got.fallback_used) == ("box", EMBED, True)
        assert got.vectors == [embedding("a"), embedding("b")]


async def test_missing_embedding_model_on_the_server_fails_over_and_503s(
    make_llm: MakeLLM, log: LogCapture, fake_ollama: FakeServer
) -> None:
    """Ollama lacks the configured embedding model: logged, not counted; with nothing else,
    the guide's message in a 503-kind error."""
    async with make_llm(fake_ollama, dead_url(),
                        ollama={"embedding_model": "nomic-embed-text"}) as llm:
        with pytest.raises(AllProvidersFailed, match="ollama pull nomic-embed-text"):
            await llm.embed("a")
        assert llm.registry["ollama"].stats.failures == 0
    assert log.count("[WARNING] Ollama could not make embeddings (model 'nomic-embed-text' "
                     "not found (run: ollama pull nomic-embed-text)); trying the next "
                     "provider") == 1


@pytest.mark.parametrize("texts", [[], [1], "", {"a": 1}])
async def test_bad_input_is_a_request_error(make_llm: MakeLLM, texts: object) -> None:
    """Empty or non-text input is the caller's mistake."""
    async with make_llm(ollama={"embedding_model": "nomic-embed-text"}) as llm:
        with pytest.raises(RequestError):
            await llm.embed(texts)  # type: ignore[arg-type]
