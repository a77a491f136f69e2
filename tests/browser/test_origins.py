"""A web page of another origin cannot use or steer DEMI: a real headless Chromium tries.

The page is served by a small HTTP server of its own on ``http://evil.example:<port>``
(Chromium resolves that name to 127.0.0.1 by ``--host-resolver-rules``, as DNS
rebinding would). Its script does what a hostile page can do without asking: ``fetch()``
with ``mode: "no-cors"`` and a ``text/plain`` body to the chat and admin routes, and an
ordinary CORS ``fetch()`` to read ``/status``. The fake Ollama records every request it
receives; DEMI's metrics count every answer it gave. The same page served on
``http://localhost:<port>`` reaches DEMI, so the refusal is DEMI's, not the browser's.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from src.conductor.http.app import STATE_KEY, create_app
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer
from tests.browser.test_status_page import CHROMIUM, browser

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a headless Chromium (apt-get install chromium; .ci/run does)"
)

_PAGE = """<!doctype html><html><body><pre id="out">running</pre><script>
const demi = %(demi)s;
const say = (k, v) => { document.getElementById("out").textContent += "\\n" + k + "=" + v; };
const chat = JSON.stringify({model: "demi", stream: false,
                             messages: [{role: "user", content: "hi"}]});
async function run() {
  for (const [name, path, body] of [["chat", "/api/chat", chat],
                                    ["openai", "/v1/chat/completions", chat],
                                    ["pin", "/admin/provider", '{"provider": "lmstudio"}']]) {
    try {
      const r = await fetch(demi + path, {method: "POST", mode: "no-cors", body: body,
                                          headers: {"Content-Type": "text/plain"}});
      say(name, "sent:" + r.type);
    } catch (e) { say(name, "error:" + e.name); }
  }
  try {
    const r = await fetch(demi + "/status");
    say("status", "read:" + r.status);
  } catch (e) { say("status", "error:" + e.name); }
  say("done", "yes");
}
run();
</script></body></html>"""


@pytest.fixture
async def demi(fake_ollama: FakeServer, fake_lmstudio: FakeServer,
               ) -> AsyncIterator[tuple[str, UnifiedLLMInference, web.Application]]:
    config = {"llm": {"ollama": {"base_url": fake_ollama.url},
                      "lmstudio": {"base_url": fake_lmstudio.url},
                      "embedded": {"enabled": False}, "discover": False}}
    async with UnifiedLLMInference(config, logging.getLogger("browser")) as llm:
        app = create_app(llm, llm.config)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield str(server.make_url("")).rstrip("/"), llm, app
        finally:
            await server.close()


async def _page_server(demi_url: str) -> TestServer:
    page = _PAGE % {"demi": json.dumps(demi_url)}

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def _results(dom: str) -> dict[str, str]:
    match = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert match, dom[:500]
    return dict(line.split("=", 1) for line in match.group(1).splitlines()[1:])


def _metrics(app: web.Application) -> str:
    return app[STATE_KEY].metrics.render().decode()


async def test_a_foreign_page_reaches_nothing(
    demi: tuple[str, UnifiedLLMInference, web.Application],
    fake_ollama: FakeServer, tmp_path: Path,
) -> None:
    """no-cors POSTs from http://evil.example are refused by DEMI; Ollama sees none of them."""
    demi_url, llm, app = demi
    pages = await _page_server(demi_url)
    try:
        fake_ollama.clear_requests()
        dom = await browser(f"http://evil.example:{pages.port}/", tmp_path, "--dump-dom",
                            "--host-resolver-rules=MAP evil.example 127.0.0.1")
    finally:
        await pages.close()
    results = _results(dom)
    assert results["done"] == "yes"
    # The browser did send them (an opaque answer), and could not read /status.
    assert results["chat"] == results["openai"] == results["pin"] == "sent:opaque"
    assert results["status"] == "error:TypeError"
    assert [r for r in fake_ollama.requests() if r.get("path") != "/api/tags"] == []
    assert llm.forced_provider is None
    metrics = _metrics(app)
    assert re.search(r'endpoint="/api/chat",provider="none",status="403"\} 1', metrics), metrics
    assert re.search(r'endpoint="/admin/provider",provider="none",status="403"\} 1', metrics)


async def test_a_rebinding_page_cannot_load_from_demi(
    demi: tuple[str, UnifiedLLMInference, web.Application], tmp_path: Path,
) -> None:
    """evil.example re-pointed at DEMI's own address and port: the page load itself is a 403."""
    demi_url, _, _ = demi
    port = demi_url.rsplit(":", 1)[1]
    dom = await browser(f"http://evil.example:{port}/ui", tmp_path, "--dump-dom",
                        "--host-resolver-rules=MAP evil.example 127.0.0.1")
    assert "conductor.allowed_hosts" in dom
    assert 'data-provider="ollama"' not in dom


async def test_the_same_page_on_localhost_reaches_demi(
    demi: tuple[str, UnifiedLLMInference, web.Application],
    fake_ollama: FakeServer, tmp_path: Path,
) -> None:
    """The control: served from a loopback origin, the page's requests are answered."""
    demi_url, llm, _ = demi
    pages = await _page_server(demi_url)
    try:
        fake_ollama.clear_requests()
        dom = await browser(f"http://localhost:{pages.port}/", tmp_path, "--dump-dom")
    finally:
        await pages.close()
    results = _results(dom)
    assert results["status"] == "read:200"
    assert any(r.get("path") == "/api/chat" for r in fake_ollama.requests())
    assert llm.forced_provider == "lmstudio"
