"""The live status page, rendered by a real headless Chromium against a real conductor.

Chromium runs the page's JavaScript (it fetches ``/status`` and draws the table); the test
reads the DOM it produced. Needs Debian's ``chromium`` package, which ``.ci/run`` installs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from src.conductor.http.app import create_app
from src.llm.clock import ManualClock
from src.llm.inference import UnifiedLLMInference
from src.testing.fakes.launcher import FakeServer, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a headless Chromium (apt-get install chromium; .ci/run does)"
)


async def browser(url: str, tmp_path: Path, *extra: str) -> str:
    """Load ``url`` in headless Chromium, let its scripts run, return the resulting DOM."""
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=4000", *extra, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out.decode()


@pytest.fixture
async def served(fake_ollama: FakeServer, fake_lmstudio: FakeServer,
                 ) -> AsyncIterator[tuple[str, UnifiedLLMInference]]:
    config = {"llm": {"ollama": {"base_url": fake_ollama.url},
                      "lmstudio": {"base_url": fake_lmstudio.url},
                      "embedded": {"enabled": False}}}
    async with UnifiedLLMInference(config, logging.getLogger("browser")) as llm:
        server = TestServer(create_app(llm, llm.config), host="127.0.0.1")
        await server.start_server()
        try:
            yield str(server.make_url("/ui")), llm
        finally:
            await server.close()


async def test_page_shows_providers_and_active(served: tuple[str, UnifiedLLMInference],
                                               tmp_path: Path) -> None:
    """The page lists every provider in the chain and marks Ollama active when all is well."""
    url, _ = served
    dom = await browser(url, tmp_path, "--dump-dom")
    assert 'data-loaded="true"' in dom
    assert 'data-provider="ollama"' in dom and 'data-provider="lmstudio"' in dom
    assert "Ollama  ◀ active" in dom
    assert "automatic (failover)" in dom


async def test_page_follows_a_failover(served: tuple[str, UnifiedLLMInference],
                                       fake_ollama: FakeServer, tmp_path: Path) -> None:
    """After Ollama dies and a message fails over, the page shows LM Studio active and why."""
    url, llm = served
    fake_ollama.kill()
    result = await llm.chat_detailed([{"role": "user", "content": "hi"}])
    assert result.provider == "lmstudio"
    dom = await browser(url, tmp_path, "--dump-dom")
    assert "LMStudio  ◀ active" in dom
    assert "Connection refused" in dom  # Ollama's reason, shown under its state
    assert "Ollama inference failed" in dom  # the switch, with its reason


async def test_page_shows_pinned_provider(served: tuple[str, UnifiedLLMInference],
                                          tmp_path: Path) -> None:
    """A provider pinned with force_provider is shown as pinned."""
    url, llm = served
    llm.force_provider("lmstudio")
    dom = await browser(url, tmp_path, "--dump-dom")
    assert "pinned to lmstudio" in dom


async def test_page_screenshot_renders(served: tuple[str, UnifiedLLMInference],
                                       tmp_path: Path) -> None:
    """Chromium can paint the page (a non-empty PNG), for people to look at."""
    url, _ = served
    shot = tmp_path / "status.png"
    await browser(url, tmp_path, f"--screenshot={shot}", "--window-size=1100,700")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000


async def test_page_charts_traffic_canary_and_sticky(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer, tmp_path: Path,
) -> None:
    """Per provider the page draws share, error and TTFT charts as inline SVG, and shows a
    rolled-back canary with its numbers and the sticky hit rate."""
    config = {"llm": {"ollama": {"base_url": fake_ollama.url},
                      "lmstudio": {"base_url": fake_lmstudio.url},
                      "embedded": {"enabled": False}, "failure_threshold": 100,
                      "routing": {"strategy": "canary", "sticky": True, "canary": {
                          "provider": "lmstudio", "percent": 50, "window": 4,
                          "max_error_rate": 0.25}}}}
    async with UnifiedLLMInference(config, logging.getLogger("browser")) as llm:
        conv = [{"role": "user", "content": "hi"}]
        for _ in range(4):
            reply = await llm.chat_detailed(conv)
            conv += [{"role": "assistant", "content": reply.text},
                     {"role": "user", "content": "more"}]
        fake_lmstudio.control(mode="status", status=500)
        for i in range(6):
            await llm.chat([{"role": "user", "content": f"other {i}"}])
        assert llm.status_report()["canary"]["state"] == "rolled_back"
        server = TestServer(create_app(llm, llm.config), host="127.0.0.1")
        await server.start_server()
        try:
            dom = await browser(str(server.make_url("/ui")), tmp_path, "--dump-dom")
        finally:
            await server.close()
    # One timeline for both providers: stacked segments, errors marked in red.
    assert dom.count('data-chart="timeline"') == 1
    assert 'class="seg" data-provider="ollama"' in dom
    assert 'class="seg" data-provider="lmstudio"' in dom
    assert 'class="err" data-provider="lmstudio"' in dom
    assert "canary lmstudio: 0% (rolled back) after 2 errors in" in dom
    assert "sticky hit rate: 100% (3/3" in dom


SCREENSHOT = Path(__file__).resolve().parents[2] / "bench" / "results" / "status-page.png"
"""Refreshed by ``DEMI_SCREENSHOTS=1 pytest tests/browser`` (never behind a plain run's back)."""


async def test_the_timeline_shows_an_outage_at_a_glance(
    fake_server_factory: Any, tmp_path: Path,
) -> None:
    """80 requests over four minutes (canary 20 %), Ollama killed after 60: the timeline
    draws both providers' requests on one time axis, Ollama's failure in red and the switch
    as a marker; the labels describe the whole window. With DEMI_SCREENSHOTS=1 the
    screenshot is written to bench/results/status-page.png (committed, for the next person
    to see what users see)."""
    ollama = fake_server_factory("ollama")
    lmstudio = fake_server_factory("lmstudio")
    clock = ManualClock()
    config = {"llm": {"ollama": {"base_url": ollama.url},
                      "lmstudio": {"base_url": lmstudio.url},
                      "embedded": {"enabled": False}, "discover": False,
                      "routing": {"strategy": "canary", "canary": {
                          "provider": "lmstudio", "percent": 20}}}}
    async with UnifiedLLMInference(config, logging.getLogger("browser"), clock=clock) as llm:
        for i in range(80):
            if i == 60:
                ollama.kill()
            await llm.chat([{"role": "user", "content": f"message {i}"}])
            clock.advance(3)  # four minutes of traffic in the five-minute window
        status = llm.status_report()
        served = {n: status["providers"][n]["stats"]["successes"] for n in ("ollama",
                                                                            "lmstudio")}
        assert served == {"ollama": 48, "lmstudio": 32}
        server = TestServer(create_app(llm, llm.config), host="127.0.0.1")
        await server.start_server()
        try:
            url = str(server.make_url("/ui"))
            dom = await browser(url, tmp_path, "--dump-dom")
            shot = tmp_path / "status.png"
            await browser(url, tmp_path, f"--screenshot={shot}", "--window-size=1100,1000")
        finally:
            await server.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DEMI_SCREENSHOTS") == "1":
        SCREENSHOT.write_bytes(shot.read_bytes())
    assert dom.count('class="seg" data-provider="ollama"') >= 15  # spread over the window
    assert dom.count('class="seg" data-provider="lmstudio"') >= 10
    assert 'class="err" data-provider="ollama"' in dom  # the request that met the dead Ollama
    assert '<line class="switch"' in dom and "→ LMStudio" in dom
    assert "−4 min" in dom and ">now<" in dom
    # Labels about the whole window, not the last bucket.
    assert "Ollama: 49 requests (60% of all) · 1 error (2%) · TTFT" in dom
    assert "LMStudio: 32 requests (40% of all) · 0 errors · TTFT" in dom
    assert "81 requests, 1 error, 1 switch in the last 5 minutes" in dom
    assert 'data-window="ollama">49 requests (60% of all)' in dom  # the table says the same


async def test_a_discovered_provider_is_marked_as_such(
    fake_server_factory: Any, tmp_path: Path,
) -> None:
    """An engine DEMI found by itself says so on the page, with the engine's name."""
    engine = fake_server_factory("engines", args=["--flavour", "vllm"])
    config = {"llm": {"ollama": {"base_url": f"http://127.0.0.1:{free_port()}"},
                      "lmstudio": {"base_url": f"http://127.0.0.1:{free_port()}"},
                      "embedded": {"enabled": False}, "discover": True,
                      "discover_ports": [engine.port]}}
    async with UnifiedLLMInference(config, logging.getLogger("browser")) as llm:
        server = TestServer(create_app(llm, llm.config), host="127.0.0.1")
        await server.start_server()
        try:
            dom = await browser(str(server.make_url("/ui")), tmp_path, "--dump-dom")
        finally:
            await server.close()
    name = f"vllm-{engine.port}"
    assert f'data-discovered="{name}">discovered: vLLM, not in your config' in dom


async def test_page_shows_requests_in_flight_against_the_cap(
    fake_ollama: FakeServer, fake_lmstudio: FakeServer, tmp_path: Path,
) -> None:
    """A provider with max_concurrency shows "in flight / cap" while a reply is open."""
    config = {"llm": {"ollama": {"base_url": fake_ollama.url, "max_concurrency": 2},
                      "lmstudio": {"base_url": fake_lmstudio.url},
                      "embedded": {"enabled": False}, "discover": False}}
    async with UnifiedLLMInference(config, logging.getLogger("browser")) as llm:
        server = TestServer(create_app(llm, llm.config), host="127.0.0.1")
        await server.start_server()
        try:
            async with await llm.open_stream([{"role": "user", "content": "hi"}]):
                dom = await browser(str(server.make_url("/ui")), tmp_path, "--dump-dom")
        finally:
            await server.close()
    assert 'data-in-flight="1">1 / 2<' in dom
