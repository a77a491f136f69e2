"""Health, readiness, status, metrics and the admin endpoint, in process."""

from __future__ import annotations

from typing import Any

import pytest

from src.testing.fakes.launcher import FakeServer
from tests.conductor.helpers import OLLAMA_REPLY, Conductor
from tests.waiting import wait_until


async def test_health_is_200_while_serving(conductor: Conductor) -> None:
    """GET /health answers 200 whatever the providers do."""
    resp = await conductor.client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_ready_follows_provider_health(
    conductor: Conductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """/health/ready is 200 while a provider is usable, 503 with reasons when none is."""
    resp = await conductor.client.get("/health/ready")
    assert resp.status == 200
    assert (await resp.json())["usable"] == ["ollama", "lmstudio"]

    fake_ollama.kill()
    fake_lmstudio.kill()
    resp = await conductor.client.get("/health/ready?refresh=1")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert set(body["reasons"]) == {"ollama", "lmstudio"}
    assert "Connection refused" in body["reasons"]["ollama"]
    assert "no provider is usable" in body["error"]

    fake_lmstudio.start()

    async def ready() -> bool:
        return (await conductor.client.get("/health/ready?refresh=1")).status == 200

    await wait_until(ready, "LM Studio to count as usable again")


async def test_status_reports_providers_and_history(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """/status shows each provider, the active one, chain, strategy, switches and counters."""
    fake_ollama.control(mode="status", status=500, times=1)
    assert (await conductor.chat()).headers["X-DEMI-Provider"] == "lmstudio"
    status = await (await conductor.client.get("/status")).json()
    assert status["chain"] == ["ollama", "lmstudio"]
    assert status["primary"] == "ollama"
    assert status["active_provider"] == "lmstudio"
    assert status["forced_provider"] is None
    assert status["strategy"] == "failover"
    assert isinstance(status["version"], str)
    assert status["uptime_s"] >= 0
    ollama = status["providers"]["ollama"]
    assert ollama["circuit"] == "open"
    assert "HTTP 500" in ollama["last_error"]
    assert {"latency_ms", "healthy", "usable", "model"} <= set(ollama)
    [switch] = status["switches"]
    assert (switch["from"], switch["to"]) == ("ollama", "lmstudio")
    assert switch["reason"] .startswith("Ollama inference failed: HTTP 500")
    assert isinstance(switch["time"], float)
    assert status["counters"]["requests"] == 1
    assert status["counters"]["fallbacks"] == 1


async def test_admin_forces_and_releases_a_provider(conductor: Conductor) -> None:
    """POST /admin/provider pins LM Studio; null restores automatic selection."""
    resp = await conductor.client.post("/admin/provider", json={"provider": "lmstudio"})
    assert resp.status == 200
    assert (await resp.json())["forced_provider"] == "lmstudio"
    reply = await conductor.chat()
    assert reply.headers["X-DEMI-Provider"] == "lmstudio"
    assert reply.headers["X-DEMI-Fallback"] == "false"
    got = await (await conductor.client.get("/admin/provider")).json()
    assert got["forced_provider"] == "lmstudio"
    status = await (await conductor.client.get("/status")).json()
    assert status["forced_provider"] == "lmstudio"

    resp = await conductor.client.post("/admin/provider", json={"provider": None})
    assert (await resp.json())["forced_provider"] is None
    reply = await conductor.chat()
    assert reply.headers["X-DEMI-Provider"] == "ollama"
    assert (await reply.json())["choices"][0]["message"]["content"] == OLLAMA_REPLY


BAD_ADMIN: list[tuple[str, Any, str]] = [
    ("unknown provider", {"provider": "openai"}, "Unknown provider 'openai'"),
    ("missing provider", {}, "provider is required"),
    ("provider not text", {"provider": 3}, "provider must be a provider name or null"),
    ("not an object", ["lmstudio"], "must be a JSON object"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_ADMIN, ids=[b[0] for b in BAD_ADMIN])
async def test_bad_admin_requests_are_400(
    conductor: Conductor, case: str, body: Any, fragment: str
) -> None:
    """Bad admin bodies get a 400 saying what is wrong; the pin does not change."""
    resp = await conductor.client.post("/admin/provider", json=body)
    assert resp.status == 400, case
    payload = await resp.json()
    assert fragment in payload["error"], payload["error"]
    assert conductor.llm.forced_provider is None


async def test_unknown_provider_lists_the_names(conductor: Conductor) -> None:
    """The 400 for an unknown provider lists the configured ones."""
    resp = await conductor.client.post("/admin/provider", json={"provider": "nope"})
    assert (await resp.json())["providers"] == ["ollama", "lmstudio"]


async def test_metrics_count_requests_fallbacks_and_failures(
    conductor: Conductor, fake_ollama: FakeServer
) -> None:
    """/metrics exposes requests, fallbacks, failures by reason, latency histograms, breakers."""
    await conductor.chat()
    fake_ollama.kill()
    await conductor.chat()
    await conductor.chat(model="nope")
    resp = await conductor.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    lines = text.splitlines()
    assert ('demi_http_requests_total{endpoint="/v1/chat/completions",provider="ollama",'
            'status="200"} 1.0') in lines
    assert ('demi_http_requests_total{endpoint="/v1/chat/completions",provider="lmstudio",'
            'status="200"} 1.0') in lines
    assert ('demi_http_requests_total{endpoint="/v1/chat/completions",provider="none",'
            'status="404"} 1.0') in lines
    assert 'demi_fallbacks_total{provider="lmstudio"} 1.0' in lines
    assert 'demi_provider_failures_total{provider="ollama",reason="unavailable"} 1.0' in lines
    assert 'demi_time_to_first_token_seconds_count{provider="ollama"} 1.0' in lines
    assert 'demi_request_duration_seconds_count{provider="lmstudio"} 1.0' in lines
    assert 'demi_provider_circuit_state{provider="ollama"} 2.0' in lines
    assert 'demi_provider_circuit_state{provider="lmstudio"} 0.0' in lines


async def test_each_app_has_its_own_metrics(make_conductor: Any) -> None:
    """Two apps in one process keep separate registries (no global registry clash)."""
    first = await make_conductor()
    second = await make_conductor()
    await first.chat()
    text = await (await second.client.get("/metrics")).text()
    assert 'endpoint="/v1/chat/completions"' not in text
    text = await (await first.client.get("/metrics")).text()
    assert 'endpoint="/v1/chat/completions"' in text


async def test_all_failed_counts_each_providers_failure(
    conductor: Conductor, fake_ollama: FakeServer, fake_lmstudio: FakeServer
) -> None:
    """An exhausted chain counts one failure per provider and one all-failed request."""
    fake_ollama.control(mode="status", status=503)
    fake_lmstudio.control(mode="status", status=500)
    assert (await conductor.chat()).status == 503
    lines = (await (await conductor.client.get("/metrics")).text()).splitlines()
    assert 'demi_provider_failures_total{provider="ollama",reason="busy"} 1.0' in lines
    assert 'demi_provider_failures_total{provider="lmstudio",reason="bad_response"} 1.0' in lines
    assert "demi_all_providers_failed_total 1.0" in lines
