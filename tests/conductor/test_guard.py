"""The API key and CORS on the in-process app (guard.py), over the fake providers."""

from __future__ import annotations

import pytest

from src.conductor.http.guard import check_exposure, is_loopback
from src.core.errors import ConfigError
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import HI, Conductor, sse_json

KEY = "s3cret-key"


async def test_without_key_every_route_is_401_but_health(make_conductor: MakeConductor) -> None:
    """With a key set, chat, status, metrics and admin answer 401; the health routes do not."""
    c = await make_conductor(conductor={"api_key": KEY})
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                         ("POST", "/api/chat"), ("GET", "/api/tags"), ("GET", "/status"),
                         ("GET", "/metrics"), ("GET", "/admin/provider"),
                         ("POST", "/admin/provider")]:
        resp = await c.client.request(method, path, json={"model": "demi", "messages": HI})
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/health", "/health/ready", "/ui"):
        assert (await c.client.get(path)).status == 200, path


async def test_401_speaks_each_protocol(make_conductor: MakeConductor) -> None:
    """/v1 gets OpenAI's error object (authentication_error); others get {"error": text}."""
    c = await make_conductor(conductor={"api_key": KEY})
    body = await (await c.client.get("/v1/models")).json()
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in body["error"]["message"]
    wrong = await c.client.get("/api/tags", headers={"x-api-key": "nope"})
    assert await wrong.json() == {"error": "invalid API key"}


async def test_bearer_and_x_api_key_both_pass(make_conductor: MakeConductor) -> None:
    """The key is accepted as a bearer token and as x-api-key, on chat and admin routes."""
    c = await make_conductor(conductor={"api_key": KEY})
    resp = await c.client.post(
        "/v1/chat/completions", json={"model": "demi", "messages": HI},
        headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status == 200
    resp = await c.client.post("/admin/provider", json={"provider": "lmstudio"},
                               headers={"x-api-key": KEY})
    assert resp.status == 200
    assert (await resp.json())["forced_provider"] == "lmstudio"


async def test_no_key_configured_means_open(conductor: Conductor) -> None:
    """Without conductor.api_key nothing asks for a key (loopback use stays as it was)."""
    assert (await conductor.client.get("/status")).status == 200


async def test_other_origins_get_no_cors_and_a_403(conductor: Conductor) -> None:
    """A page of another origin gets no Access-Control-* header, on a request or a preflight."""
    resp = await conductor.client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    pre = await conductor.client.options(
        "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert pre.status == 403
    assert "Access-Control-Allow-Origin" not in pre.headers


async def test_cors_origins_allow_a_browser_app(make_conductor: MakeConductor) -> None:
    """A listed origin gets a keyless preflight and the header on JSON and streamed replies."""
    origin = "https://app.example"
    c = await make_conductor(conductor={"api_key": KEY, "cors_origins": [origin]})
    pre = await c.client.options(
        "/v1/chat/completions",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    stream = await c.client.post(
        "/v1/chat/completions", json={"model": "demi", "messages": HI, "stream": True},
        headers={"Origin": origin, "Authorization": f"Bearer {KEY}"})
    assert stream.headers["Access-Control-Allow-Origin"] == origin
    assert sse_json(await stream.text())
    other = await c.client.get("/v1/models", headers={"Origin": "https://other.example",
                                                      "Authorization": f"Bearer {KEY}"})
    assert other.status == 403
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "", "demi.example"])
def test_exposure_without_key_is_refused(host: str) -> None:
    """A non-loopback bind without a key is a ConfigError that says how to set one."""
    with pytest.raises(ConfigError, match="DEMI_API_KEY"):
        check_exposure(host, None)
    check_exposure(host, KEY)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_key(host: str) -> None:
    """Loopback addresses may serve without a key."""
    assert is_loopback(host)
    check_exposure(host, None)
