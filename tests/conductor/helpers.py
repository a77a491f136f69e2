"""Helpers for the in-process conductor tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from src.conductor.http.app import STATE_KEY
from src.conductor.http.state import ConductorState
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer

HI = [{"role": "user", "content": "hi"}]
OLLAMA_MODEL = "llama3.2:1b"
LMSTUDIO_MODEL = "qwen2.5-7b-instruct"
OLLAMA_REPLY = "Hello from fake-ollama."
LMSTUDIO_REPLY = "Hello from fake-lmstudio."


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def conductor_config(ollama_url: str, lmstudio_url: str, **overrides: Any) -> dict[str, Any]:
    """Short bounds, no embedded model, no background checks during a test."""
    base: dict[str, Any] = {
        "llm": {
            "ollama": {"base_url": ollama_url, "timeout": 5.0},
            "lmstudio": {"base_url": lmstudio_url, "timeout": 5.0},
            "embedded": {"enabled": False},
            "health_check_interval": 60,
            "probe_interval": 0.05,
            "health_check_timeout": 3.0,
            "connect_timeout": 2.0,
            "read_idle_timeout": 5.0,
        },
        "conductor": {"max_body_bytes": 4096},
    }
    return _merge(base, overrides)


@dataclass
class Conductor:
    client: TestClient[web.Request, web.Application]
    llm: UnifiedLLMInference
    app: web.Application

    @property
    def state(self) -> ConductorState:
        return self.app[STATE_KEY]

    async def chat(self, path: str = "/v1/chat/completions", **body: Any) -> Any:
        body.setdefault("model", "demi")
        body.setdefault("messages", HI)
        return await self.client.post(path, json=body)


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


def sse_json(text: str) -> list[dict[str, Any]]:
    """The JSON events of an SSE body (``[DONE]`` left out)."""
    return [json.loads(e) for e in sse_events(text) if e != "[DONE]"]


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def upstream_chats(server: FakeServer) -> list[dict[str, Any]]:
    """Chat requests the fake received (its native chat route)."""
    path = "/api/chat" if server.kind == "ollama" else "/v1/chat/completions"
    return [r for r in server.requests() if r["path"] == path]
