"""What a routing strategy is: the order providers are tried in, and nothing else.

A strategy only orders names; it never calls a provider, and the chain walk never knows
which strategy is in force. Adding a strategy is a small class in ``strategies.py`` (or a
module of its own, like ``canary.py``) and a name in ``build.py``.

Every strategy orders only the head of the chain: the ``last_resort`` providers (the
embedded model, while it is last in the chain) stay at the end whatever the strategy
measures, so a 270M model never takes a share of the traffic or wins on a 0 ms probe.
The chain walk reports every request's outcome through :meth:`Strategy.observe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..state.stats import ProviderStats


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a strategy may look at: who is up, their stats and regions, the workload."""

    available: frozenset[str]
    stats: Mapping[str, ProviderStats]
    regions: Mapping[str, str | None]
    workload: str | None = None
    last_resort: frozenset[str] = frozenset()
    messages: Sequence[Mapping[str, Any]] = ()
    load: Mapping[str, float] = field(default_factory=dict)
    """Requests in flight over ``max_concurrency`` per provider (in flight alone when it
    has no cap): 0 is idle, 1 is full."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request went at one provider, as the chain walk saw it."""

    provider: str
    ok: bool
    ttft: float | None = None
    """Seconds from the request to the first text, failover included."""
    messages: Sequence[Mapping[str, Any]] = ()
    fallback: bool = False
    """Served after other providers failed or were down: ``ttft`` includes their time."""


class Strategy:
    """Orders the head of the chain.

    Two questions, kept apart so that looking never moves anything:

    * :meth:`rank` is pure: the order most requests get now. ``/status``, ``/metrics``,
      the status page, warm standby, ``active_provider`` and the switch log lines ask it,
      as often as they like.
    * :meth:`choose` is the order for one real request; the chain walk calls it once per
      request, and only there (and in :meth:`observe`) may a strategy's state move: a
      rotation advance, a canary's share, a sticky lookup.

    Subclasses override :meth:`_rank` and, when a request moves their state, :meth:`_choose`.
    """

    name = "failover"

    def rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """The order most requests get now; never changes the strategy's state."""
        head = [n for n in chain if n not in ctx.last_resort]
        return self._rank(head, ctx) + [n for n in chain if n in ctx.last_resort]

    def choose(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        """The order for one request being routed now (may advance the strategy's state)."""
        head = [n for n in chain if n not in ctx.last_resort]
        return self._choose(head, ctx) + [n for n in chain if n in ctx.last_resort]

    def _rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        return list(chain)

    def _choose(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        return self._rank(chain, ctx)

    def observe(self, outcome: Outcome) -> None:
        """A request finished or failed at a provider (strategies that learn override it)."""

    def describe(self) -> dict[str, Any]:
        """Extra state for ``/status`` (the canary's state, the sticky table's counts)."""
        return {}
