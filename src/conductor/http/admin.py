"""Operations endpoints: health, readiness, status, metrics, and pinning a provider.

* ``GET /health``: 200 while the process serves HTTP (liveness).
* ``GET /health/ready``: 200 while at least one provider may take traffic, else 503 with
  each provider's reason. ``?refresh=1`` probes the providers first instead of using the
  cached health results.
* ``GET /status``: providers, active/forced provider, chain, strategy, recent switches
  with times and reasons, counters, uptime, version (``?refresh=1`` as above).
* ``GET /metrics``: Prometheus text format.
* ``GET /admin/provider``: the pinned provider; ``POST /admin/provider
  {"provider": "lmstudio" | null}`` pins one (no fallback while pinned) or restores
  automatic selection.
* ``GET /admin/canary``: the canary's state; ``POST /admin/canary {"percent": 10,
  "provider": "box"}`` (both optional) resumes a rolled-back canary (at its old share
  when no percent is given) or changes it. 409 unless ``llm.routing.strategy`` is canary.

With ``conductor.api_key`` set, everything here but ``/health``, ``/health/ready`` and the
static ``/ui`` page needs the key (``guard.py``); ``serve`` refuses a non-loopback address
without one, so ``/admin/provider`` is never open to the network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ...llm import CanaryStrategy
from ..bodies import read_json_object, wrong_type
from .errors import JSON_TYPE, ApiError
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .state import ConductorState

_OK = b'{"status":"ok"}'
_STATUS_PAGE = (Path(__file__).parent / "static" / "status.html").read_bytes()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(), status=status,
                        content_type=JSON_TYPE)


def _wants_refresh(request: web.Request) -> bool:
    return request.query.get("refresh", "").lower() in ("1", "true", "yes")


class AdminRoutes:
    """Handlers bound to one app's state."""

    def __init__(self, state: ConductorState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_get("/health/ready", self.ready)
        app.router.add_get("/status", self.status)
        app.router.add_get("/ui", self.page)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/admin/provider", self.get_provider)
        app.router.add_post("/admin/provider", self.set_provider)
        app.router.add_get("/admin/canary", self.get_canary)
        app.router.add_post("/admin/canary", self.set_canary)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(body=_OK, content_type=JSON_TYPE)

    async def ready(self, request: web.Request) -> web.Response:
        llm = self.state.llm
        if _wants_refresh(request):
            await llm.health(refresh=True)
        usable: list[str] = []
        reasons: dict[str, str] = {}
        for name in llm.chain:
            st = llm.provider_status(name)
            if st["usable"]:
                usable.append(name)
            else:
                reasons[name] = st["last_error"] or f"circuit {st['circuit']}"
        if usable:
            return _json({"status": "ready", "usable": usable,
                          "active_provider": llm.active_provider})
        summary = "; ".join(f"{llm.display(n)}: {r}" for n, r in reasons.items())
        return _json({"status": "unavailable", "error": f"no provider is usable ({summary})",
                      "reasons": reasons}, status=503)

    async def status(self, request: web.Request) -> web.Response:
        state = self.state
        llm = state.llm
        if _wants_refresh(request):
            await llm.health(refresh=True)
        report = llm.status_report()
        report["counters"]["http_in_flight"] = state.in_flight
        data = {
            "service": "demi-conductor",
            "version": state.version,
            "uptime_s": round(time.monotonic() - state.started, 3),
            "models": list(state.catalog.names),
            **report,
        }
        return _json(data)

    async def page(self, request: web.Request) -> web.Response:
        """The live status page: static HTML that polls ``/status`` every two seconds."""
        return web.Response(body=_STATUS_PAGE, content_type="text/html", charset="utf-8")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.state.metrics.render(),
                            headers={"Content-Type": METRICS_TYPE})

    def _provider_body(self) -> dict[str, Any]:
        llm = self.state.llm
        return {"forced_provider": llm.forced_provider, "active_provider": llm.active_provider,
                "chain": list(llm.chain)}

    async def get_provider(self, request: web.Request) -> web.Response:
        return _json(self._provider_body())

    async def set_provider(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, self.state.max_body)
        llm = self.state.llm
        if "provider" not in body:
            raise ApiError(400, 'provider is required: {"provider": "<name>"} pins one, '
                           '{"provider": null} restores automatic selection',
                           extra={"providers": list(llm.chain)})
        name = body["provider"]
        if name is not None and not isinstance(name, str):
            raise wrong_type("provider", "a provider name or null", name)
        llm.force_provider(name)  # an unknown name: 400 listing the providers
        return _json(self._provider_body())

    def _canary(self) -> CanaryStrategy:
        llm = self.state.llm
        canary = llm.canary
        if canary is None:
            raise ApiError(409, f"llm.routing.strategy is {llm.strategy.name!r}; set it to "
                           "'canary' (with llm.routing.canary) to use /admin/canary")
        return canary

    async def get_canary(self, request: web.Request) -> web.Response:
        return _json(self._canary().describe()["canary"])

    async def set_canary(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, self.state.max_body)
        canary = self._canary()
        unknown = sorted(set(body) - {"percent", "provider"})
        if unknown:
            raise ApiError(400, f"unknown field(s) {unknown}: /admin/canary takes "
                           '{"percent": 0-100, "provider": "<name>"}, both optional')
        percent = body.get("percent")
        if percent is not None:
            if isinstance(percent, bool) or not isinstance(percent, int | float):
                raise wrong_type("percent", "a number from 0 to 100", percent)
            if not 0 <= percent <= 100:
                raise ApiError(400, f"percent must be from 0 to 100, not {percent}",
                               param="percent")
        provider = body.get("provider")
        chain = list(self.state.llm.chain)
        if provider is not None and provider not in chain:
            raise ApiError(400, f"provider {provider!r} is not in the chain {chain}",
                           extra={"providers": chain})
        canary.update(provider=provider, percent=None if percent is None else float(percent))
        return _json(canary.describe()["canary"])
