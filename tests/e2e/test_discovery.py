"""The first five minutes: DEMI with no config answers from the engines already running.

Three kinds of fake engine (llama.cpp's server, vLLM, KoboldCpp) run as processes; the
ports probed are set through ``DEMI_DISCOVER_PORTS`` (the documented override, so the
machine's own default ports play no part); Ollama and LM Studio are not running. DEMI is
started with no config file, answers through the real ``openai`` client from each engine
in turn as the ones before it are killed, and the YAML it logged is valid config.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import openai
import yaml

from src.core.config import DemiConfig
from src.testing.fakes.launcher import FakeServer, free_port
from tests.e2e.helpers import HI, ConductorProcess


def dead() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_demi_with_no_config_answers_from_the_engines_it_found(
    tmp_path: Path, fake_server_factory: Callable[..., FakeServer],
) -> None:
    """Chain: the guide's pair, then the engines in port order; each answers in turn."""
    engines = [
        fake_server_factory("engines", args=["--flavour", "llamacpp", "--model", "qwen2.5-0.5b"]),
        fake_server_factory("engines", args=["--flavour", "vllm", "--model", "Qwen/Qwen2.5-1.5B"]),
        fake_server_factory("engines", args=["--flavour", "koboldcpp", "--model", "tiefighter"]),
    ]
    ports = ",".join(str(e.port) for e in engines)
    demi = ConductorProcess(tmp_path, dead(), dead(), env={
        "DEMI_CONFIG": "", "DEMI_DISCOVER": "true", "DEMI_DISCOVER_PORTS": ports})
    try:
        demi.start()
        names = [f"llamacpp-{engines[0].port}", f"vllm-{engines[1].port}",
                 f"koboldcpp-{engines[2].port}"]
        status = demi.get_json("/status")
        assert status["chain"] == ["ollama", "lmstudio", *names]
        assert [status["providers"][n]["source"] for n in status["chain"]] == [
            "config", "config", "discovered", "discovered", "discovered"]
        assert status["providers"][names[1]]["engine"] == "vLLM"

        async with openai.AsyncOpenAI(base_url=f"{demi.url}/v1", api_key="x",
                                      max_retries=0, timeout=30) as client:
            served = []
            for engine in engines:
                raw = await client.chat.completions.with_raw_response.create(
                    model="demi", messages=HI)  # type: ignore[arg-type]
                reply = raw.parse()
                served.append((raw.headers["X-DEMI-Provider"], reply.choices[0].message.content))
                engine.kill()
        assert served == [
            (names[0], "Hello from fake-llamacpp."),
            (names[1], "Hello from fake-vllm."),
            (names[2], "Hello from fake-koboldcpp."),
        ]

        log = demi.stderr() + demi.stdout()
        lines = re.findall(r"^\[INFO\] Found .*$", log, flags=re.MULTILINE)
        assert len(lines) == 3, log
        kept = []
        for line in lines:
            config = DemiConfig.from_mapping(yaml.safe_load(line.split("add to your config: ")[1]))
            kept.extend((p.name, p.base_url, p.model) for p in config.llm.providers)
        assert kept == [(names[0], engines[0].url, "qwen2.5-0.5b"),
                        (names[1], engines[1].url, "Qwen/Qwen2.5-1.5B"),
                        (names[2], engines[2].url, "tiefighter")]
    finally:
        demi.stop()
