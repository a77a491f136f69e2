"""Embeddings through DEMI with the real clients: both faces, failover, and the 404 that
names the key when no provider has an embedding model."""

from __future__ import annotations

import ollama
import openai
import pytest

from src.testing.fakes.abilities import embedding
from src.testing.fakes.launcher import FakeServer
from tests.e2e.conftest import MakeConductor
from tests.e2e.helpers import ConductorProcess

OLLAMA_EMBED = "nomic-embed-text:latest"
LMSTUDIO_EMBED = "text-embedding-nomic-embed-text-v1.5"


@pytest.fixture
def demi(make_demi: MakeConductor, ollama_fake: FakeServer,
         lmstudio_fake: FakeServer) -> ConductorProcess:
    """A conductor whose Ollama and LM Studio both have an embedding model installed."""
    ollama_fake.control(models=["llama3.2:1b", OLLAMA_EMBED])
    lmstudio_fake.control(models=["qwen2.5-7b-instruct", LMSTUDIO_EMBED])
    return make_demi(env={"OLLAMA_EMBEDDING_MODEL": OLLAMA_EMBED,
                          "LMSTUDIO_EMBEDDING_MODEL": LMSTUDIO_EMBED})




def close(got: list[float], want: list[float]) -> bool:
    return all(abs(a - b) < 1e-5 for a, b in zip(got, want, strict=True))


async def test_openai_embeddings_float_and_base64(
    oai: openai.AsyncOpenAI, ollama_fake: FakeServer
) -> None:
    """openai's client (base64 by default, and float) gets Ollama's vectors, in order."""
    got = await oai.embeddings.create(model="text-embedding-3-small", input=["a", "bb"])
    assert [d.index for d in got.data] == [0, 1]
    assert close(got.data[1].embedding, embedding("bb"))
    assert got.usage.prompt_tokens > 0
    floats = await oai.embeddings.create(model="demi", input="a", encoding_format="float")
    assert floats.data[0].embedding == embedding("a")
    sent = [r["json"] for r in ollama_fake.requests() if r["path"] == "/api/embed"]
    assert sent[-1]["model"] == OLLAMA_EMBED


async def test_ollama_embed_and_legacy_embeddings(oll: ollama.AsyncClient) -> None:
    """ollama's embed() and the older embeddings() get Ollama-shaped answers."""
    got = await oll.embed(model="nomic-embed-text", input=["a", "b"])
    assert got.embeddings == [embedding("a"), embedding("b")]
    assert got.prompt_eval_count and got.prompt_eval_count > 0
    legacy = await oll.embeddings(model="nomic-embed-text", prompt="a")
    assert list(legacy.embedding) == embedding("a")


async def test_embeddings_fail_over_to_lmstudio(
    demi: ConductorProcess, oll: ollama.AsyncClient, ollama_fake: FakeServer,
    lmstudio_fake: FakeServer,
) -> None:
    """Ollama down: LM Studio's embedding model answers, flagged as a fallback."""
    ollama_fake.kill()
    got = await oll.embed(model="nomic-embed-text", input="a")
    assert got.embeddings == [embedding("a")]
    sent = [r["json"] for r in lmstudio_fake.requests() if r["path"] == "/v1/embeddings"]
    assert sent[-1] == {"model": LMSTUDIO_EMBED, "input": ["a"]}


async def test_no_embedding_model_is_a_404_naming_the_key(
    make_demi: MakeConductor,
) -> None:
    """Without an embedding model anywhere, both faces get a 404 naming the keys to set."""
    demi = make_demi()
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x",
                                  max_retries=0) as client:
        with pytest.raises(openai.NotFoundError, match=r"llm\.ollama\.embedding_model"):
            await client.embeddings.create(model="demi", input="a")
    oll = ollama.AsyncClient(host=demi.url, timeout=10)
    with pytest.raises(ollama.ResponseError) as info:
        await oll.embed(model="demi", input="a")
    assert info.value.status_code == 404
    assert "llm.lmstudio.embedding_model" in info.value.error
    await oll.close()


async def test_provider_without_embedding_model_is_skipped(
    make_demi: MakeConductor, lmstudio_fake: FakeServer, ollama_fake: FakeServer,
) -> None:
    """Only LM Studio has an embedding model: it answers while Ollama is up, not a fallback."""
    lmstudio_fake.control(models=["qwen2.5-7b-instruct", LMSTUDIO_EMBED])
    demi = make_demi(env={"LMSTUDIO_EMBEDDING_MODEL": LMSTUDIO_EMBED})
    async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x",
                                  max_retries=0) as client:
        raw = await client.embeddings.with_raw_response.create(model="demi", input="a")
    assert raw.headers["x-demi-provider"] == "lmstudio"
    assert raw.headers["x-demi-fallback"] == "false"
    assert not [r for r in ollama_fake.requests() if r["path"] == "/api/embed"]
