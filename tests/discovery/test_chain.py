"""Discovered engines in the chain: where they join, what is logged, how they leave.

Real fake-engine processes on loopback; the ports probed are overridden through
``llm.discover_ports`` (the documented setting), so nothing on this machine's default
ports takes part.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from src.core.config import DemiConfig
from src.llm import UnifiedLLMInference
from src.llm.clock import SystemClock
from src.llm.discovery import DiscoveredProviders
from src.llm.factory import build_entry
from src.llm.providers.base import Timeouts
from src.llm.state.breaker import BreakerPolicy
from src.llm.state.health import HealthMonitor
from src.llm.state.registry import ProviderRegistry
from src.testing.fakes.launcher import free_port
from src.testing.scripted import ScriptedProvider
from tests.conftest import HI, LogCapture, MakeLLM, dead_url
from tests.discovery.conftest import MakeEngine
from tests.waiting import wait_until


def discovering(ports: list[int], **overrides: Any) -> dict[str, Any]:
    """``make_llm`` overrides: discovery on, over exactly ``ports``."""
    return {"discover": True, "discover_ports": ports, **overrides}


def found_lines(log: LogCapture) -> list[str]:
    return [line for line in log.lines if line.startswith("[INFO] Found ")]


async def test_engines_answer_after_the_pair_in_port_order(
    make_llm: MakeLLM, make_engine: MakeEngine, log: LogCapture,
) -> None:
    """Three kinds of engine join after Ollama and LM Studio in the order of the ports, and
    answer in that order as each one before them dies."""
    llama = make_engine("llamacpp", args=["--model", "qwen2.5-0.5b"])
    vllm = make_engine("vllm", args=["--model", "Qwen/Qwen2.5-1.5B"])
    kobold = make_engine("koboldcpp", args=["--model", "tiefighter"])
    ports = [llama.port, vllm.port, kobold.port]
    async with make_llm(dead_url(), dead_url(), **discovering(ports)) as llm:
        names = [f"llamacpp-{llama.port}", f"vllm-{vllm.port}", f"koboldcpp-{kobold.port}"]
        assert llm.chain == ["ollama", "lmstudio", *names]
        result = await llm.chat_detailed(HI)
        assert (result.provider, result.model, result.text) == (
            names[0], "qwen2.5-0.5b", "Hello from fake-llamacpp.")
        llama.kill()
        result = await llm.chat_detailed(HI)
        assert (result.provider, result.text) == (names[1], "Hello from fake-vllm.")
        vllm.kill()
        result = await llm.chat_detailed(HI)
        assert (result.provider, result.text) == (names[2], "Hello from fake-koboldcpp.")


async def test_each_engine_found_is_one_info_line_with_valid_yaml(
    make_llm: MakeLLM, make_engine: MakeEngine, log: LogCapture,
) -> None:
    """The logged YAML, laid over the defaults, is a valid config keeping that engine."""
    llama = make_engine("llamacpp", args=["--model", "qwen2.5-0.5b"])
    sglang = make_engine("sglang", args=["--model", "meta-llama/Llama-3.2-1B"])
    async with make_llm(dead_url(), dead_url(),
                        **discovering([llama.port, sglang.port])) as llm:
        lines = found_lines(log)
        assert len(lines) == 2
        assert lines[0].startswith(f"[INFO] Found llama.cpp server on http://127.0.0.1:"
                                   f"{llama.port} serving qwen2.5-0.5b; it answers after "
                                   "LMStudio (discovered, not configured).")
        entries = []
        for line in lines:
            snippet = line.split("add to your config: ", 1)[1]
            config = DemiConfig.from_mapping(yaml.safe_load(snippet))
            entries.extend(config.llm.providers)
        assert [(e.name, e.kind, e.base_url, e.model) for e in entries] == [
            (f"llamacpp-{llama.port}", "openai", llama.url, "qwen2.5-0.5b"),
            (f"sglang-{sglang.port}", "openai", sglang.url, "meta-llama/Llama-3.2-1B"),
        ]
        # The same entry in a config file makes the same provider (and is then not probed).
        row = llm.provider_status(entries[0].name)
        assert (row["source"], row["engine"]) == ("discovered", "llama.cpp server")
        assert llm.provider_status("ollama")["source"] == "config"


async def test_a_second_ollama_joins_as_an_ollama_provider(
    make_llm: MakeLLM, fake_server_factory: Any, log: LogCapture,
) -> None:
    """An Ollama on a probed port is a full Ollama provider asking for its first model."""
    second = fake_server_factory("ollama", args=["--model", "qwen2.5:0.5b"])
    async with make_llm(dead_url(), dead_url(), **discovering([second.port])) as llm:
        name = f"ollama-{second.port}"
        assert llm.chain == ["ollama", "lmstudio", name]
        assert llm.providers[name].kind == "ollama"
        result = await llm.chat_detailed(HI)
        assert (result.provider, result.model) == (name, "qwen2.5:0.5b")
        assert [r["path"] for r in second.requests() if r["method"] == "POST"] == ["/api/chat"]


async def test_a_port_a_configured_provider_uses_is_not_probed(
    make_llm: MakeLLM, make_engine: MakeEngine,
) -> None:
    """LM Studio configured on the engine's port: no second provider, no probe there."""
    llama = make_engine("llamacpp")
    async with make_llm(dead_url(), llama.url, **discovering([llama.port])) as llm:
        assert llm.chain == ["ollama", "lmstudio"]
    paths = [r["path"] for r in llama.requests()]
    assert "/api/version" not in paths
    # One /props: the configured provider learning its slot count (max_concurrency: null);
    # discovery's own probe would be a second.
    assert paths.count("/props") == 1


async def test_discover_false_probes_nothing(
    make_llm: MakeLLM, make_engine: MakeEngine,
) -> None:
    """llm.discover: false: the engine hears nothing and the chain is the configured one."""
    llama = make_engine("llamacpp")
    async with make_llm(dead_url(), dead_url(), discover=False,
                        discover_ports=[llama.port]) as llm:
        assert llm.chain == ["ollama", "lmstudio"]
    assert llama.requests() == []


async def test_an_engine_that_needs_a_key_is_named_not_added(
    make_llm: MakeLLM, make_engine: MakeEngine, log: LogCapture,
) -> None:
    """Jan without its key: one line saying what to add, and it stays out of the chain."""
    jan = make_engine("jan", args=["--api-key", "secret"])
    async with make_llm(dead_url(), dead_url(), **discovering([jan.port])) as llm:
        assert llm.chain == ["ollama", "lmstudio"]
    [line] = found_lines(log)
    assert "it needs an API key, so DEMI does not use it" in line
    snippet = yaml.safe_load(line.split("add to your config: ", 1)[1])
    assert snippet["llm"]["providers"][0]["api_key"] == "YOUR-API-KEY"


async def test_an_engine_started_later_joins_and_one_that_leaves_is_dropped_quietly(
    make_llm: MakeLLM, make_engine: MakeEngine, log: LogCapture,
) -> None:
    """Scans every health_check_interval: a new engine joins; a discovered one that stays
    down an interval leaves with one INFO line, never a warning of its own."""
    later = free_port()
    vllm = make_engine("vllm")
    async with make_llm(dead_url(), dead_url(), health_check_interval=0.2,
                        **discovering([vllm.port, later])) as llm:
        assert llm.chain == ["ollama", "lmstudio", f"vllm-{vllm.port}"]
        textgen = make_engine("textgen", port=later)
        await wait_until(lambda: f"textgen-{later}" in llm.chain, "the later engine to join")
        assert llm.chain[-1] == f"textgen-{later}"
        vllm.kill()
        await wait_until(lambda: f"vllm-{vllm.port}" not in llm.chain,
                         "the dead engine to be dropped")
        result = await llm.chat_detailed(HI)
        assert result.provider == f"textgen-{later}"
        assert textgen.is_running()
    dropped = log.containing("has stopped answering")
    assert dropped == [f"[INFO] vLLM on {vllm.url} has stopped answering; DEMI no longer "
                       "uses it (it was discovered, not configured)"]
    assert not [line for line in log.lines
                if line.startswith("[WARNING]") and "vLLM" in line]


async def test_engines_join_before_the_embedded_model(make_engine: MakeEngine) -> None:
    """The keeper inserts discovered providers ahead of the last resort, keeping it last."""
    llama = make_engine("llamacpp")
    clock = SystemClock()
    registry = ProviderRegistry(
        {n: ScriptedProvider(n) for n in ("ollama", "lmstudio", "embedded")}, clock,
        BreakerPolicy(failure_threshold=1, recovery_successes=2, probe_interval=0.5,
                      backoff_max=30.0),
        on_breaker=lambda *a: None, on_change=lambda cause: None)
    monitor = HealthMonitor(registry, clock, interval=lambda: 60.0,
                            logger=logging.getLogger("test"))
    timeouts = Timeouts(connect=1.0, read_idle=5.0, health=1.0)
    keeper = DiscoveredProviders(
        registry, monitor, clock, logging.getLogger("test"), ports=[llama.port], timeout=1.0,
        interval=lambda: 60.0, build=lambda entry: build_entry(entry, timeouts),
        before="embedded", joined=lambda name, found: None, left=lambda name: None,
        pinned=lambda: None)
    added = await keeper.startup()
    try:
        assert added == [f"llamacpp-{llama.port}"]
        assert list(registry) == ["ollama", "lmstudio", f"llamacpp-{llama.port}", "embedded"]
    finally:
        await keeper.stop()
        await registry[added[0]].provider.close()


def test_the_facade_never_discovers_with_injected_providers() -> None:
    """Providers handed in (tests) or an explicit llm.order: the chain is exactly that."""
    llm = UnifiedLLMInference({"llm": {"discover": True, "embedded": {"enabled": False}}},
                              providers={"ollama": ScriptedProvider("ollama")})
    assert llm.discovery is None
    ordered = UnifiedLLMInference({"llm": {"discover": True, "order": ["ollama"],
                                           "embedded": {"enabled": False}}})
    assert ordered.discovery is None
