"""The four targets and how each is started: direct, floor, DEMI and LiteLLM.

A target is a set of endpoints (one per API it serves) plus, for gateways, its process.
Direct and floor speak whatever the upstream speaks, so they are asked for the upstream's own
model; DEMI and LiteLLM are asked for ``demi``, the name that routes through their failover.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.client import ANTHROPIC, OLLAMA, OPENAI, RESPONSES, Client, Endpoint
from bench.procs import REPO_ROOT, ServiceProcess, TargetFailed, clean_env
from src.testing.fakes.launcher import free_port

DIRECT, FLOOR, DEMI, LITELLM = "direct", "floor", "DEMI", "LiteLLM"
UPSTREAM_MODEL = "llama3.2:1b"  # the fake Ollama's default model, DEMI's default too
GATEWAY_MODEL = "demi"


@dataclass
class Target:
    name: str
    endpoints: dict[str, Endpoint]
    proc: ServiceProcess | None = None
    start_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def endpoint(self, api: str) -> Endpoint | None:
        return self.endpoints.get(api)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _endpoints(base: str, model: str, *, ollama: bool = True,
               anthropic: bool = False, responses: bool = False) -> dict[str, Endpoint]:
    eps = {OPENAI: Endpoint(f"{base}/v1/chat/completions", model, OPENAI)}
    if ollama:
        eps[OLLAMA] = Endpoint(f"{base}/api/chat", model, OLLAMA)
    if anthropic:
        eps[ANTHROPIC] = Endpoint(f"{base}/v1/messages", model, ANTHROPIC)
    if responses:
        eps[RESPONSES] = Endpoint(f"{base}/v1/responses", model, RESPONSES)
    return eps


def direct(ollama_url: str) -> Target:
    """The client talks to the fake Ollama itself (its native API and its OpenAI layer)."""
    return Target(DIRECT, _endpoints(ollama_url, UPSTREAM_MODEL))


async def wait_ready(client: Client, target: Target, limit: float) -> float:
    """Seconds from process start to the first answered chat request (polled every 10 ms)."""
    proc = target.proc
    assert proc is not None
    ep = target.endpoints[OPENAI]
    deadline = time.perf_counter() + limit
    last = "no answer"
    while time.perf_counter() < deadline:
        code = proc.exit_code()
        if code is not None:
            raise TargetFailed(
                f"{target.name} exited with status {code} before answering "
                f"({' '.join(proc.argv)}):\n{proc.log_tail()}"
            )
        sample = await client.request(ep, stream=False)
        if sample.ok:
            return time.perf_counter() - proc.started_at
        last = sample.error or last
        await asyncio.sleep(0.01)
    raise TargetFailed(
        f"{target.name} did not answer a chat request within {limit:g}s (last: {last}) "
        f"({' '.join(proc.argv)}):\n{proc.log_tail()}"
    )


async def start_gateway(client: Client, target: Target, limit: float) -> Target:
    """Start the target's process and wait for its first answer (recorded in start_seconds)."""
    assert target.proc is not None
    target.proc.start()
    try:
        target.start_seconds.append(await wait_ready(client, target, limit))
    except BaseException:
        target.proc.stop()
        raise
    return target


async def floor(client: Client, ollama_url: str, workdir: Path) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--upstream", ollama_url]
    proc = ServiceProcess(FLOOR, argv, clean_env({"PYTHONPATH": str(REPO_ROOT)}), REPO_ROOT)
    target = Target(FLOOR, _endpoints(f"http://127.0.0.1:{port}", UPSTREAM_MODEL), proc)
    return await start_gateway(client, target, limit=20)


def demi_env(ollama_url: str, lmstudio_url: str, config: Path | None, port: int) -> dict[str, str]:
    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "OLLAMA_BASE_URL": ollama_url,
        "LMSTUDIO_BASE_URL": lmstudio_url,
        "DEMI_EMBEDDED_ENABLED": "false",
        "DEMI_LOG_LEVEL": "WARNING",
        "DEMI_PORT": str(port),
    }
    if config is not None:
        env["DEMI_CONFIG"] = str(config)
    return clean_env(env)


async def demi(
    client: Client, ollama_url: str, lmstudio_url: str, workdir: Path,
    config: Path | None = None,
) -> Target:
    """The conductor, from a scratch working directory (so no stray .env is read).

    Started with ``python -m src.conductor serve``, the one command line.
    """
    port = free_port()
    env = demi_env(ollama_url, lmstudio_url, config, port)
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "src.conductor", "serve", "--port", str(port)]
    proc = ServiceProcess(DEMI, argv, env, workdir)
    target = Target(DEMI, _endpoints(base, GATEWAY_MODEL, anthropic=True, responses=True), proc)
    try:
        await start_gateway(client, target, limit=30)
    except TargetFailed as exc:
        raise TargetFailed(f"DEMI could not be started:\n{exc}") from None
    return target
