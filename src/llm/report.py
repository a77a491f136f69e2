"""Words and reports: the guide's log lines and error messages, ``/status`` and the CLI rows.

The guide's wording is an interface (LLM_PROVIDER_FALLBACK_GUIDE.md): ``Using Ollama
provider``, ``Ollama unavailable, switched to LMStudio provider``, ``Ollama inference
failed: Connection refused``, ``Both Ollama and LMStudio providers failed`` and ``Ollama
provider failed and fallback is disabled``. This module is the only one that words them,
and the only one that knows the guide's provider names (:data:`OLLAMA`, :data:`LMSTUDIO`,
:data:`EMBEDDED`); everything else works with whatever names the config has.

It also keeps the recent history people read (:class:`~src.llm.status.History`)
and builds the per-provider status dicts that ``/status``, ``/ready`` and ``demi status``
show.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .errors import (
    AllProvidersFailed,
    CannotExpress,
    ProviderError,
    ProviderRejected,
    RequestRejected,
)
from .state.history import History
from .state.registry import ProviderRegistry
from .types import HealthReport

OLLAMA = "ollama"
LMSTUDIO = "lmstudio"
EMBEDDED = "embedded"
"""The guide's provider names (also the config keys of its two servers and the model)."""


class Reporter:
    """Logs the guide's lines, words its errors, records history, builds status dicts."""

    def __init__(
        self, registry: ProviderRegistry, logger: logging.Logger, history: History,
    ) -> None:
        self._registry = registry
        self.logger = logger
        self.history = history

    # -- log lines -----------------------------------------------------------------------
    def started(self, active: str, preferred: str) -> None:
        """The line after the start-up checks: which provider DEMI uses."""
        display = self._registry.display
        if not self._registry[active].usable:
            reasons = "; ".join(
                f"{n}: {self._registry[n].last_error or 'not ready'}" for n in self._registry
            )
            self.logger.warning("No LLM provider is reachable yet (%s)", reasons)
        elif active == preferred:
            self.logger.info("Using %s provider", display(preferred))
        else:
            self.logger.info("%s unavailable, switched to %s provider",
                             display(preferred), display(active))

    def switched(self, old: str, new: str, preferred: str, cause: str) -> None:
        """The provider new requests go to changed; ``cause`` is ``request`` or ``health``."""
        new_d, old_d = self._registry.display(new), self._registry.display(old)
        why = self._registry[old].last_error if old in self._registry else None
        if new == preferred:
            kind, reason = "recovered", f"{new_d} recovered"
            self.logger.info("%s recovered, switched back to %s provider", new_d, new_d)
        elif cause == "request":
            kind, reason = "failed", f"{old_d} inference failed" + (f": {why}" if why else "")
            self.logger.info("Switched to %s provider", new_d)
        else:
            kind, reason = "unavailable", f"{old_d} unavailable" + (f": {why}" if why else "")
            self.logger.info("%s unavailable, switched to %s provider", old_d, new_d)
        self.history.record_switch(old, new, reason, kind=kind, why=why)

    def forced(self, name: str | None, active: str) -> None:
        """``force_provider`` pinned ``name`` (or restored automatic selection: None)."""
        if name is None:
            self.logger.info("Automatic provider selection restored; using %s provider",
                             self._registry.display(active))
        else:
            self.logger.info("Using %s provider (pinned by force_provider)",
                             self._registry.display(name))
        self.history.record_switch(active, name or active, "force_provider", kind="pinned")

    def trying(self, name: str) -> None:
        self.logger.debug("Using %s provider", self._registry.display(name))

    def continued(self, used: frozenset[str] | Sequence[str], name: str, chars: int) -> None:
        """A broken stream goes on with ``name``: a count, never the text itself."""
        self.history.continuations += 1
        self.logger.info("Continuing a broken reply on %s provider after %d characters",
                         self._registry.display(name), chars)

    def retrying(self, round_no: int, wait: float) -> None:
        """Every provider failed with something that passes by itself: another round."""
        self.logger.info("Every provider failed for now; trying them again in %.2fs "
                         "(round %d)", wait, round_no + 1)

    def hedging(self, slow: str, target: str) -> None:
        """No first token from ``slow`` yet: ``target`` is asked as well."""
        self.logger.info("No first token from %s provider yet; asking %s provider as well",
                         self._registry.display(slow), self._registry.display(target))

    def failed(self, name: str, exc: ProviderError) -> None:
        """A provider failed one request: the guide's ``<X> inference failed: <why>``."""
        display = self._registry.display(name)
        if not exc.counts_against_health:  # loading, not broken: no alarm
            self.logger.info("%s not ready: %s", display, exc.reason)
            return
        self.logger.warning("%s inference failed: %s", display, exc.reason)
        self.history.record_failure(name, exc.reason)

    def skipped(self, name: str, exc: CannotExpress) -> None:
        """The provider cannot express the request (nobody's fault): the next one is asked."""
        self.logger.debug("%s skipped: %s", self._registry.display(name), exc)

    def spilled(self, full: str, served_by: str) -> None:
        """A provider at its cap was passed over (never a switch: the guide's lines stay)."""
        self.logger.debug("%s is at its max_concurrency; %s takes this request",
                          self._registry.display(full), self._registry.display(served_by))

    def degraded(self, name: str, exc: CannotExpress) -> None:
        """No provider could express a field: this one serves the request without it."""
        self.logger.debug("No provider can express %s; %s serves the request without it (%s)",
                          exc.field, self._registry.display(name), exc.reason)

    def rejected(self, name: str, exc: ProviderRejected) -> None:
        """The server refused the request (its answer, not a failure): the next one is asked.

        The server's words may quote the request, so they go to DEBUG only.
        """
        display = self._registry.display(name)
        self.logger.info("%s refused the request (HTTP %s); asking the next provider",
                         display, exc.status or 400)
        self.logger.debug("%s refusal: %s", display, exc.reason)

    def answering(self, name: str, fallback: bool, chain: Sequence[str]) -> None:
        """A reply started; the embedded model standing in is worth a warning."""
        if name == EMBEDDED and fallback:
            self.logger.warning("%s; the embedded model is answering", self._summary(chain))

    # -- error messages ------------------------------------------------------------------
    def _summary(self, order: Sequence[str]) -> str:
        names = [n for n in order if n != EMBEDDED]
        if OLLAMA in names and LMSTUDIO in names:
            return "Both Ollama and LMStudio providers failed"
        return "All providers failed (" + ", ".join(self._registry.display(n) for n in names) + ")"

    def all_failed(
        self, order: Sequence[str], errors: Sequence[ProviderError], *, forced: str | None,
        chain: Sequence[str], fallback_enabled: bool,
    ) -> AllProvidersFailed:
        """The guide's message for a request no provider could serve, with what to do."""
        display = self._registry.display
        reasons = "; ".join(f"{display(e.provider)}: {e.reason}" for e in errors)
        if forced is not None:
            name = display(forced)
            message = (
                f"{name} provider failed (pinned with force_provider): {reasons}. "
                "Call force_provider(None) to allow fallback, or fix the provider."
            )
        elif len(chain) == 1 and not fallback_enabled:
            name = display(chain[0])
            message = (
                f"{name} provider failed and fallback is disabled: {reasons}. "
                f"Set DEMI_ENABLE_LLM_FALLBACK=true to fall back to another provider, "
                f"or fix {name}."
            )
        else:
            hints = []
            for n in order:
                if n not in self._registry:
                    continue  # a discovered provider that has left
                url = self._registry[n].provider.base_url
                if self._registry[n].provider.kind == "ollama":
                    hints.append(f"curl {url}/api/tags")
                elif url:
                    hints.append(f"curl {url}/v1/models")
            message = f"{self._summary(order)}: {reasons}."
            if hints:
                message += " Check that a provider is running: " + ", ".join(hints) + "."
        self.history.record_exhausted()
        return AllProvidersFailed(message, errors)

    def all_rejected(self, errors: Sequence[ProviderRejected]) -> RequestRejected:
        """Every provider asked refused the request: the caller gets their reasons (a 4xx)."""
        if len(errors) == 1:
            message = errors[0].reason  # "<Server> rejected the request: <its words>"
        else:
            message = "Every provider refused the request: " + "; ".join(
                e.reason for e in errors)
        return RequestRejected(message, errors)

    # -- status --------------------------------------------------------------------------
    def provider_status(self, name: str, active: str) -> dict[str, Any]:
        """One provider's row: ``/status``, ``/ready``, ``health()`` and ``demi status``."""
        st = self._registry[name]
        report = st.report or HealthReport(healthy=False, latency=0.0, error="not checked yet")
        return {
            "name": name,
            "display_name": st.provider.display_name,
            "kind": st.provider.kind,
            "base_url": st.provider.base_url,
            "model": st.provider.model,
            "healthy": report.healthy,
            "loading": report.loading,
            "usable": st.usable,
            "circuit": st.breaker.state.value,
            "last_check": st.checked_wall,
            "last_error": st.last_error,
            "latency_ms": round(report.latency * 1000, 2),
            "models": list(report.models),
            "model_present": report.model_present,
            "active": name == active,
            "stats": st.stats.as_dict(),
            "recent": st.traffic.as_dict(),
            "in_flight": st.serving,
            "max_concurrency": st.cap,
            "spillovers": st.spillovers,
        }

    def status(
        self, *, active: str, forced: str | None, primary: str, strategy: str,
    ) -> dict[str, Any]:
        """The LLM layer's part of ``/status``: providers, routing, history and counters."""
        return {
            "active_provider": active,
            "forced_provider": forced,
            "primary": primary,
            "chain": list(self._registry),
            "strategy": strategy,
            "providers": {n: self.provider_status(n, active) for n in self._registry},
            **self.history.as_dict(),
        }
