"""A real engine: llama.cpp's OpenAI-compatible server stands in for LM Studio.

Ollama is not running (its port refuses connections), so DEMI must fail over to the real
server and get real tokens from the Gemma 3 270M model that the gemma3 package ships.
The model is a base model: the server uses the vicuna chat format and requests stop at
"USER:", as PROTOCOLS.md describes. Tests check that text arrives and streams, not what it
says.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from src.llm import HealthReport, StreamInterrupted
from src.llm.inference import UnifiedLLMInference
from src.llm.providers.gguf import resolve_model_file
from src.testing.fakes.launcher import free_port
from tests.integration.engines import needs_embedded
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, needs_embedded]

ALIAS = "gemma-3-270m-test"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A llama_cpp.server process on a free loopback port, serving the Gemma GGUF."""
    model = resolve_model_file(None, None)
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chat_format",
            "vicuna",
            "--model_alias",
            ALIAS,
            "--n_ctx",
            "1024",
            "--n_threads",
            "1",
            "--verbose",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {Path(log_path).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not become ready within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def config(lmstudio_url: str) -> dict[str, object]:
    return {
        "llm": {
            "ollama": {"base_url": f"http://127.0.0.1:{free_port()}"},
            "lmstudio": {"base_url": lmstudio_url, "timeout": 60},
            "embedded": {"enabled": False},
        }
    }


async def test_fails_over_to_real_engine(llama_server: str) -> None:
    """With Ollama down, the llama.cpp server (as LM Studio) answers with real tokens."""
    async with UnifiedLLMInference(config(llama_server), logging.getLogger("t")) as llm:
        assert llm.active_provider == "lmstudio"
        result = await llm.chat_detailed(
            [{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            stop=["USER:"],
        )
    assert result.provider == "lmstudio"
    assert result.model == ALIAS
    assert result.fallback_used
    assert result.text.strip()


async def test_streams_real_tokens(llama_server: str) -> None:
    """A streamed reply from the real engine arrives as several chunks."""
    async with UnifiedLLMInference(config(llama_server), logging.getLogger("t")) as llm:
        chunks = [
            c
            async for c in llm.stream_chat(
                [{"role": "user", "content": "Tell me about the sea."}],
                max_tokens=24,
                stop=["USER:"],
            )
        ]
    assert len(chunks) >= 2
    assert "".join(chunks).strip()


async def test_health_reports_real_model(llama_server: str) -> None:
    """LM Studio's health check against the real server lists its model."""
    async with UnifiedLLMInference(config(llama_server), logging.getLogger("t")) as llm:
        health = await llm.health(refresh=True)
    assert health["lmstudio"]["healthy"]
    assert ALIAS in health["lmstudio"]["models"]
    assert not health["ollama"]["healthy"]


async def test_health_probes_never_cut_a_real_reply(llama_server: str) -> None:
    """llama.cpp's server aborts the reply it is generating when another request arrives
    (``interrupt_requests``, on by default), and a health probe is such a request. With
    probes due every 0.2 s, 20 streamed replies in a row must all finish: the serving
    provider is never probed (passive health), and it is probed again once idle."""
    cfg = config(llama_server)
    cfg["llm"]["health_check_interval"] = 0.2  # type: ignore[index]
    async with UnifiedLLMInference(cfg, logging.getLogger("t")) as llm:
        state = llm.registry["lmstudio"]
        real_health = state.provider.health
        probes: list[int] = []  # how many requests were in flight at each probe

        async def counted_health() -> HealthReport:
            probes.append(state.serving)
            return await real_health()

        state.provider.health = counted_health  # type: ignore[method-assign]
        broken: list[str] = []
        for i in range(20):
            try:
                text = "".join([c async for c in llm.stream_chat(
                    [{"role": "user", "content": f"Tell me about the sea, part {i}."}],
                    max_tokens=24, stop=["USER:"])])
                assert text.strip()
            except StreamInterrupted as exc:
                broken.append(str(exc))
        assert broken == []
        assert [n for n in probes if n] == []  # no probe while a reply was being generated
        idle_probes = len(probes)
        await wait_until(lambda: len(probes) > idle_probes, "a probe once the server is idle",
                         within=10)
