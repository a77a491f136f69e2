"""LiteLLM's proxy as the peer: the same Ollama → OpenAI-compatible fallback, configured from
LiteLLM's documented settings, one worker, callbacks off, no network look-ups.

It runs in whatever interpreter has ``litellm[proxy]``: ``--litellm-python PATH`` or, when the
``bench`` extra is installed, the bench's own. Its Ollama API is not measured (LiteLLM's
proxy serves the OpenAI API only).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

from bench.client import OPENAI, Client, Endpoint
from bench.procs import ServiceProcess, clean_env
from bench.targets import GATEWAY_MODEL, LITELLM, UPSTREAM_MODEL, Target, start_gateway
from src.testing.fakes.launcher import free_port

FALLBACK_GROUP = "demi-fallback"
LAUNCH = "import sys; from litellm import run_server; sys.argv[0] = 'litellm'; run_server()"


def find_python(option: str | None) -> tuple[str | None, str]:
    """The interpreter to run LiteLLM with, or None and the reason it is skipped."""
    if option:
        probe = subprocess.run(
            [option, "-c", "import litellm.proxy.proxy_server"],
            capture_output=True, text=True, timeout=120,
        )
        if probe.returncode != 0:
            return None, f"`{option}` cannot import litellm's proxy: {probe.stderr.strip()[-200:]}"
        return option, ""
    if importlib.util.find_spec("litellm") is None:
        return None, ("litellm[proxy] is not installed (pip install -e '.[bench]', "
                      "or --litellm-python PATH)")
    return sys.executable, ""


def settings(bound: float, cooldown: float) -> dict[str, object]:
    """The router settings used, as recorded in the report."""
    return {
        "num_retries": 0,
        "timeout": bound,
        "allowed_fails": 0,
        "cooldown_time": cooldown,
        "fallbacks": [{GATEWAY_MODEL: [FALLBACK_GROUP]}],
    }


def write_config(
    path: Path, ollama_url: str, lmstudio_url: str, lmstudio_model: str,
    bound: float, cooldown: float,
) -> Path:
    limits = {"timeout": bound, "stream_timeout": bound}
    config = {
        "model_list": [
            {"model_name": GATEWAY_MODEL, "litellm_params": {
                "model": f"ollama_chat/{UPSTREAM_MODEL}", "api_base": ollama_url, **limits}},
            {"model_name": FALLBACK_GROUP, "litellm_params": {
                "model": f"openai/{lmstudio_model}", "api_base": f"{lmstudio_url}/v1",
                "api_key": "lm-studio", **limits}},
        ],
        "router_settings": settings(bound, cooldown),
        "litellm_settings": {
            "callbacks": [], "success_callback": [], "failure_callback": [],
            "drop_params": True, "request_timeout": bound, "set_verbose": False,
            "turn_off_message_logging": True,
        },
        # DEMI has no authentication (it listens on loopback); LiteLLM is run the same way.
        "general_settings": {
            "disable_spend_logs": True, "disable_error_logs": True,
            "dangerously_permit_weak_or_unset_master_key": True,
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def litellm(
    client: Client, python: str, ollama_url: str, lmstudio_url: str, lmstudio_model: str,
    workdir: Path, *, bound: float, cooldown: float,
) -> Target:
    port = free_port()
    config = write_config(
        workdir / f"litellm-{port}.yaml", ollama_url, lmstudio_url, lmstudio_model,
        bound, cooldown,
    )
    argv = [python, "-c", LAUNCH, "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    env = clean_env({
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list at start
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
    })
    proc = ServiceProcess(LITELLM, argv, env, workdir)
    base = f"http://127.0.0.1:{port}"
    target = Target(LITELLM, {OPENAI: Endpoint(f"{base}/v1/chat/completions", GATEWAY_MODEL,
                                               OPENAI)}, proc)
    return await start_gateway(client, target, limit=120)
