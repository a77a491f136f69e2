"""Safe at the edges: no web page can use or steer DEMI (guard.py), through real HTTP.

A browser sends a "simple" cross-origin POST (``text/plain``, an ``Origin`` header) without
asking first, and a DNS-rebinding page reaches 127.0.0.1 under its own host name. Each
such request must be refused with a 403 in the protocol's shape before DEMI does any work:
the fake Ollama, which records every API request it receives, must see none of them.
"""

from __future__ import annotations

import json

import pytest

from src.conductor.http.guard import Guard, host_name, is_local_name
from src.testing.fakes.launcher import FakeServer
from tests.conductor.conftest import MakeConductor
from tests.conductor.helpers import HI, Conductor

EVIL = "http://evil.example"
CHAT = json.dumps({"model": "demi", "messages": HI})

# (method, path, body): what a page could do to the user's DEMI, and to the user's Ollama.
ATTACKS = [
    ("POST", "/api/chat", CHAT),
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/admin/provider", json.dumps({"provider": "lmstudio"})),
    ("POST", "/api/pull", json.dumps({"model": "llama3.2:1b"})),
    ("GET", "/status", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ATTACKS)
async def test_a_foreign_origin_is_refused_before_any_work(
    conductor: Conductor, fake_ollama: FakeServer, method: str, path: str, body: str | None,
) -> None:
    """text/plain from Origin: evil.example gets 403 in the route's shape; Ollama sees nothing."""
    fake_ollama.clear_requests()
    resp = await conductor.client.request(
        method, path, data=body, headers={"Origin": EVIL, "Content-Type": "text/plain"})
    assert resp.status == 403
    error = (await resp.json())["error"]
    if path.startswith("/v1/"):
        assert error["type"] == "permission_error"
        assert error["code"] == "origin_not_allowed"
        assert "conductor.cors_origins" in error["message"]
    else:
        assert "origin 'http://evil.example' are not allowed" in error
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert fake_ollama.requests() == []
    assert conductor.llm.forced_provider is None


@pytest.mark.parametrize("path", ["/status", "/api/chat", "/v1/models", "/health"])
async def test_a_rebinding_host_is_refused(
    conductor: Conductor, fake_ollama: FakeServer, path: str,
) -> None:
    """While bound to loopback, Host: evil.example:8420 is a 403, even on /health."""
    fake_ollama.clear_requests()
    method = "POST" if path == "/api/chat" else "GET"
    resp = await conductor.client.request(
        method, path, data=CHAT if method == "POST" else None,
        headers={"Host": "evil.example:8420"})
    assert resp.status == 403
    body = await resp.json()
    text = body["error"]["message"] if path.startswith("/v1/") else body["error"]
    assert "conductor.allowed_hosts" in text
    assert fake_ollama.requests() == []


@pytest.mark.parametrize("origin", [
    "http://localhost:3000", "http://127.0.0.1:8420", "https://localhost",
    "http://[::1]:5173", "http://app.localhost:8080", "http://0.0.0.0:8000",
    "app://obsidian.md", "file://", "tauri://localhost", "vscode-webview://abc123",
    "vscode-file://vscode-app",
])
async def test_local_pages_and_app_schemes_may_call(conductor: Conductor, origin: str) -> None:
    """Loopback pages on any port and desktop/editor app schemes are answered, with CORS."""
    resp = await conductor.client.post("/api/chat", data=CHAT,
                                       headers={"Origin": origin, "Content-Type": "text/plain"})
    assert resp.status == 200, origin
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    pre = await conductor.client.options(
        "/api/chat", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert pre.status == 204


@pytest.mark.parametrize("origin", [
    "null", "chrome-extension://abcdef", "moz-extension://abc", "http://localhost.evil.example",
    "http://127.0.0.1.nip.io", "http://192.168.1.5:8420", "https://evil.example:443",
    "http://localhost:notaport", "javascript:alert(1)",
])
def test_origins_refused_by_default(origin: str) -> None:
    """Sandboxed frames, extensions, look-alike names and LAN pages are refused by default."""
    assert not Guard(None).origin_allowed(origin)


def test_cors_origins_take_exact_entries_and_patterns() -> None:
    """Entries are exact origins or ``*`` patterns (case-insensitive); "*" allows all."""
    guard = Guard(None, ("https://App.Example/", "chrome-extension://*", "https://*.corp.lan"))
    assert guard.origin_allowed("https://app.example")
    assert guard.origin_allowed("chrome-extension://abcdef")
    assert guard.origin_allowed("https://wiki.corp.lan")
    assert not guard.origin_allowed("https://corp.lan.evil.example")
    assert not guard.origin_allowed("http://app.example")
    assert Guard(None, ("*",)).origin_allowed("https://evil.example")


def test_hosts_while_bound_to_loopback() -> None:
    """Loopback names pass, others only through allowed_hosts; off loopback there is no check."""
    guard = Guard(None, bind_host="127.0.0.1", allowed_hosts=("demi.lan", "*.proxy.internal"))
    for host in ("127.0.0.1:8420", "localhost:8420", "[::1]:8420", "LOCALHOST", "demi.lan",
                 "demi.lan:443", "api.proxy.internal", "0.0.0.0:8420", None, ""):
        assert guard.host_allowed(host), host
    for host in ("evil.example:8420", "localhost.evil.example", "proxy.internal", "10.0.0.2"):
        assert not guard.host_allowed(host), host
    assert Guard("key", bind_host="0.0.0.0").host_allowed("evil.example")
    assert Guard(None, allowed_hosts=("*",)).host_allowed("evil.example")


def test_host_names_and_local_names() -> None:
    assert host_name("[::1]:8420") == "[::1]"
    assert host_name("EXAMPLE.com:80") == "example.com"
    assert is_local_name("127.1.2.3") and is_local_name("a.b.localhost.")
    assert not is_local_name("evil.example")


async def test_allowed_hosts_serve_a_reverse_proxy(
    make_conductor: MakeConductor,
) -> None:
    """A name in conductor.allowed_hosts (a reverse proxy's) reaches DEMI on loopback."""
    c = await make_conductor(conductor={"allowed_hosts": ["demi.home.arpa"]})
    resp = await c.client.get("/status", headers={"Host": "demi.home.arpa"})
    assert resp.status == 200
    resp = await c.client.get("/status", headers={"Host": "other.home.arpa"})
    assert resp.status == 403


async def test_requests_without_origin_are_unaffected(conductor: Conductor) -> None:
    """curl, SDKs and servers send no Origin: they get no CORS header and no refusal."""
    resp = await conductor.client.post("/v1/chat/completions", data=CHAT,
                                       headers={"Content-Type": "application/json"})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
