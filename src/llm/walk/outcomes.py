"""The one recorder of outcomes: everything that follows from how an attempt went.

The walk decides what to try next; this module owns every side effect of what happened,
so no step of the walk repeats another's bookkeeping:

* the registry (counts, breaker, last error) and the strategy's observations;
* the guide's log lines and the history people read (through the reporter);
* the hedge ledger's first-token samples and wins;
* the active provider (``on_change``: a failure or a closed breaker may move it);
* token calibration and, through the strategy's observation, the sticky table, which
  remembers the *caller's* conversation (not the copy fitted into one provider's context
  window, so the next turn of a long conversation still matches).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import CannotExpress, ProviderError, ProviderRejected, ProviderTimeout
from ..report import Reporter
from ..routing.strategy import Outcome, Strategy
from ..state.registry import ProviderRegistry
from ..tokens import TokenEstimator
from ..types import ChatChunk, ChatRequest
from .hedge import HedgeLedger


class OutcomeRecorder:
    """Hears each attempt's outcome once and updates every part that cares."""

    def __init__(
        self,
        registry: ProviderRegistry,
        strategy: Strategy,
        reporter: Reporter,
        hedges: HedgeLedger,
        tokens: TokenEstimator,
        on_change: Callable[[str], None],
    ) -> None:
        self._registry = registry
        self._strategy = strategy
        self._reporter = reporter
        self._hedges = hedges
        self._tokens = tokens
        self._on_change = on_change

    # -- before a reply started ----------------------------------------------------------
    def skipped(self, name: str, exc: CannotExpress) -> None:
        """The provider cannot say this request: nobody's fault; nothing is counted."""
        self._reporter.skipped(name, exc)

    def rejected(self, name: str, exc: ProviderRejected) -> None:
        """The server refused this request: its answer, counted as a rejection only."""
        self._registry.record_rejection(name, exc)
        self._reporter.rejected(name, exc)

    def failed(self, name: str, exc: ProviderError) -> None:
        """The provider could not serve the request (a loading model is not held against it)."""
        self._reporter.failed(name, exc)
        self._registry.record_failure(name, exc)
        if exc.counts_against_health:
            self._strategy.observe(Outcome(name, ok=False))
        # Say why traffic moves now, before a health probe can report it first.
        self._on_change("request")

    def hedge_lost(self, slow: str, delay: float, winner: str) -> None:
        """Silent past the hedge delay while another provider answered: a hung server must
        open its circuit now, not after a full first-token timeout on a later request."""
        self.failed(slow, ProviderTimeout(
            slow, f"no first token within {delay:g}s; "
            f"{self._registry.display(winner)} answered first"))

    def answering(self, name: str, ttft: float | None, *, fallback: bool, hedged: bool,
                  chain: Sequence[str]) -> None:
        """A provider produced its first chunk and the reply goes to the caller."""
        if ttft is not None:
            self._hedges.observe_ttft(name, ttft)
        self._hedges.hedge_wins += hedged
        self._reporter.answering(name, fallback, chain)

    def spilled(self, full: str, served_by: str) -> None:
        """``full`` was at its cap, so ``served_by`` took the request: counted, not a failure."""
        self._registry[full].spillovers += 1
        self._reporter.spilled(full, served_by)

    # -- when a reply (or one provider's part of it) ended -------------------------------
    def finished(
        self, name: str, request: ChatRequest, conversation: Sequence[dict[str, Any]],
        started: float, ttft: float | None, fallback: bool,
        final: ChatChunk | None, error: ProviderError | None,
    ) -> None:
        """``name``'s part of a reply ended: with ``final``, or broken by ``error``."""
        if error is not None:
            self.failed(name, error)
            return
        assert final is not None
        moved = self._registry.record_success(
            name, time.perf_counter() - started, ttft,
            final.prompt_tokens, final.completion_tokens, fallback,
        )
        if moved:
            self._on_change("request")
        self._strategy.observe(Outcome(name, ok=True, ttft=ttft, messages=conversation,
                                       fallback=fallback))
        if name not in self._registry:
            return  # a discovered provider that left as its last reply ended
        provider = self._registry[name].provider
        self._tokens.calibrate(f"{provider.name}:{provider.model}", request.messages,
                               final.prompt_tokens)
        self._reporter.history.record_request(name, fallback)
