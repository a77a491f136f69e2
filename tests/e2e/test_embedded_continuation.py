"""The embedded model continues a stream Ollama broke (LM Studio down), in one response."""

from __future__ import annotations

import json
import urllib.request

import pytest

from src.testing.fakes.launcher import FakeServer, free_port
from tests.e2e.conftest import MakeConductor
from tests.integration.engines import needs_embedded

pytestmark = [pytest.mark.integration, needs_embedded, pytest.mark.timeout(300)]


def test_embedded_model_continues_a_cut_stream(
    make_demi: MakeConductor, ollama_fake: FakeServer
) -> None:
    """Ollama cut after two words: the embedded model's words follow them, one [DONE]."""
    demi = make_demi(env={"DEMI_EMBEDDED_ENABLED": "true",
                          "LMSTUDIO_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    ollama_fake.control(reply="The capital of France is Paris.", mode="cut", after_chunks=2,
                        times=1)
    body = {"model": "demi", "stream": True, "max_tokens": 16,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    req = urllib.request.Request(demi.url + "/v1/chat/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=240) as resp:
        raw = resp.read().decode()
    events = [json.loads(line[6:]) for line in raw.splitlines()
              if line.startswith("data: {")]
    text = "".join(ch["delta"].get("content") or "" for e in events
                   for ch in e.get("choices", []))
    assert raw.rstrip().endswith("data: [DONE]")
    assert not any("error" in e for e in events)
    assert text.startswith("The capital")  # Ollama's part, then whatever the model added
    [final] = [e for e in events if "demi" in e]
    assert final["demi"]["providers"] == ["ollama", "embedded"]
