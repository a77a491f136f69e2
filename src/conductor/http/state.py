"""Everything the handlers of one app share, computed once when the app is built.

Handlers are bound methods of small route classes holding this object, so the hot path
reads attributes instead of looking things up in the config or the app on every request.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from importlib import metadata

from ...core.config import DemiConfig
from ...llm import UnifiedLLMInference
from ..catalog import ModelCatalog, configured_embedding_models, configured_models
from .metrics import Metrics

PROVIDER_HEADER = "X-DEMI-Provider"
FALLBACK_HEADER = "X-DEMI-Fallback"
DEGRADED_HEADER = "X-DEMI-Degraded"
SPILLOVER_HEADER = "X-DEMI-Spillover"
"""The provider a request went past because it was at its max_concurrency."""
"""Request fields the serving provider left out because no provider could express them."""


def demi_version() -> str:
    try:
        return metadata.version("demi-llm")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class ConductorState:
    """The LLM, the config-derived constants, metrics and counters of one app."""

    def __init__(
        self, llm: UnifiedLLMInference, config: DemiConfig, logger: logging.Logger
    ) -> None:
        self.llm = llm
        self.config = config
        self.logger = logger
        self.max_body = config.conductor.max_body_bytes
        self.version = demi_version()
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.in_flight = 0
        self.catalog = ModelCatalog(
            config.conductor.model_aliases, configured_models(llm.providers.values()),
            self.started_wall,
            embedding_models=configured_embedding_models(llm.providers.values()),
        )
        self.metrics = Metrics(self._circuits, lambda: self.in_flight,
                               routing=llm.status_report, hedges=llm.hedge_counts)
        # Request ids: a random per-process prefix and a counter (cheaper than uuid4).
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._headers: dict[
            tuple[str, bool, str, tuple[str, ...], str | None], dict[str, str]] = {}

    def _circuits(self) -> list[tuple[str, str]]:
        return [(n, self.llm.provider_status(n)["circuit"]) for n in self.llm.chain]

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{self._id_prefix}{next(self._ids):x}"

    def headers(self, provider: str, fallback: bool, content_type: str,
                degraded: tuple[str, ...] = (), spilled: str | None = None) -> dict[str, str]:
        """Response headers naming the serving provider (cached: a handful of combinations)
        and, when it served the request without a field it cannot express, that field."""
        key = (provider, fallback, content_type, degraded, spilled)
        headers = self._headers.get(key)
        if headers is None:
            headers = self._headers[key] = {
                "Content-Type": content_type,
                PROVIDER_HEADER: provider,
                FALLBACK_HEADER: "true" if fallback else "false",
            }
            if degraded:
                headers[DEGRADED_HEADER] = ", ".join(degraded)
            if spilled:
                headers[SPILLOVER_HEADER] = spilled
            if content_type.startswith("text/event-stream"):
                headers["Cache-Control"] = "no-cache"
        return headers
