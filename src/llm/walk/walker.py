"""The chain walk: one request over the provider order, until one provider starts answering.

For one request::

    route = strategy.choose(...)        once per request: the only call that moves routing
    for each round (retries):
        for each provider in the route (usable first, open circuits last):
            async with Attempt(...)     open the reply, wait for its first chunk, close on
                                        every way out unless handed to the caller
                race(...)               with a hedge when the first is slow to start
    wait for a model still loading      when everything failed but a model was loading
    → ReplyStream                       the winner's reply; a break after text is
                                        continued by the next provider (``resume``)

Everything before the first text can fail over invisibly; after it, the reply belongs to
that provider, or is continued by the next one. How each attempt went is reported once,
to the :class:`~.outcomes.OutcomeRecorder`; the walk itself only decides what to try next.

How an attempt can end, and what the walk does about it:

* an answer: the reply starts; a racing attempt is cancelled;
* skipped (:class:`CannotExpress`): this server cannot say the request; the next is asked;
* refused (:class:`ProviderRejected`, a server's 400/422): its answer, not its failure;
  the next is asked, and only if every provider refused does the caller get the refusal;
* failed (:class:`ProviderError`): counted against the provider; the next is asked;
* the caller's own mistake (:class:`RequestError` from DEMI's translation): raised at once;
* anything else is a DEMI bug: it propagates untouched and counts against no provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core.config import LLMConfig
from ..errors import (
    AllProvidersFailed,
    CannotExpress,
    DemiError,
    EmbeddedModelLoading,
    ProviderError,
    ProviderRejected,
    RequestError,
)
from ..options import ChatOptions
from ..providers.base import Provider
from ..report import Reporter
from ..routing.strategy import RouteContext, Strategy
from ..state.health import HealthMonitor
from ..state.registry import ProviderRegistry
from ..state.slots import SlotQueue, retry_after
from ..tokens import TokenEstimator
from ..types import ChatChunk, ChatRequest
from .attempt import Attempt, starts_reply
from .fitting import request_for
from .hedge import HedgeLedger, HedgePolicy, race
from .outcomes import OutcomeRecorder
from .reply import Continuation, ReplyStream
from .retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class WalkPolicy:
    """The configuration the walk reads, built once."""

    max_tokens: int
    health_check_wait: float
    load_wait: float
    fallback_enabled: bool
    mid_stream: str
    hedge: HedgePolicy
    retry: RetryPolicy
    embedded_spillover: bool = False
    """Whether the last resort takes requests that find every server at its cap."""
    queue_max_wait: float = 30.0
    queue_max_waiting: int = 64

    @classmethod
    def from_config(cls, llm: LLMConfig) -> WalkPolicy:
        return cls(max_tokens=llm.max_tokens, health_check_wait=llm.health_check_wait,
                   load_wait=llm.embedded.load_wait, fallback_enabled=llm.enable_fallback,
                   mid_stream=llm.mid_stream, hedge=HedgePolicy.from_config(llm.hedge),
                   retry=RetryPolicy(llm.retry), embedded_spillover=llm.embedded.spillover,
                   queue_max_wait=llm.queue.max_wait, queue_max_waiting=llm.queue.max_waiting)


@dataclass(slots=True, eq=False)
class Route:
    """One request's way through the chain: the order chosen for it, once, and what the
    walk learned on the way."""

    order: list[str]
    """The strategy's choice for this request, preferred first."""
    messages: list[dict[str, Any]]
    """The caller's conversation (each provider gets its own fitted copy)."""
    options: ChatOptions
    pinned: bool
    started: float = field(default_factory=time.perf_counter)
    tried: set[str] = field(default_factory=set)
    failures: list[ProviderError] = field(default_factory=list)
    """This round's failures (a retry round starts with none)."""
    rejections: list[ProviderRejected] = field(default_factory=list)
    skipped: list[tuple[str, CannotExpress]] = field(default_factory=list)
    """Providers that cannot express the request, and why (in the route's order)."""
    full: list[str] = field(default_factory=list)
    """This pass's usable providers passed over because they were at their cap."""
    queued: bool = False
    """The request waited in the slot queue and was woken: it goes before newcomers."""

    def attempts(self, registry: ProviderRegistry) -> list[str]:
        """The order to try now: usable providers first, open circuits last (a last
        resort, never skipped)."""
        usable = registry.usable()
        return ([n for n in self.order if n in usable]
                + [n for n in self.order if n not in usable and n in registry])

    def new_round(self) -> None:
        self.tried.clear()
        self.failures.clear()
        self.rejections.clear()
        self.skipped.clear()


class ChainWalker:
    """Walks the provider order for each request; the facade's one way to ask providers."""

    def __init__(
        self,
        registry: ProviderRegistry,
        strategy: Strategy,
        monitor: HealthMonitor,
        reporter: Reporter,
        policy: WalkPolicy,
        *,
        forced: Callable[[], str | None],
        on_change: Callable[[str], None],
        last_resort: frozenset[str] = frozenset(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self.queue = SlotQueue(max_wait=policy.queue_max_wait,
                               max_waiting=policy.queue_max_waiting,
                               retry_after=self.retry_after)
        registry.on_release = lambda _name: self.queue.slot_freed()
        self.last_resort = last_resort
        self.strategy = strategy
        self.monitor = monitor
        self.reporter = reporter
        self.policy = policy
        self.tokens = TokenEstimator()
        self.hedges = HedgeLedger(policy.hedge)
        self.outcomes = OutcomeRecorder(registry, strategy, reporter, self.hedges, self.tokens,
                                        on_change)
        self._sleep = sleep
        self._forced = forced

    def retry_after(self, waiting: int) -> float:
        """Seconds until a slot is likely free behind ``waiting`` queued requests: the
        measured service time of the capped usable providers, over their slots."""
        capped = [self.registry[n] for n in self.registry.usable() if self.registry[n].cap]
        slots = sum(st.cap or 0 for st in capped)
        times = [st.stats.latency_ewma for st in capped if st.stats.latency_ewma]
        service = sum(times) / len(times) if times else None
        return retry_after(service, waiting + sum(st.serving for st in capped) - slots, slots)

    @property
    def chain(self) -> list[str]:
        """The providers in failover order now (discovered ones join and leave)."""
        return list(self.registry)

    @property
    def forced(self) -> str | None:
        """The provider pinned with ``force_provider``, if any."""
        return self._forced()

    # -- order -----------------------------------------------------------------------------
    def _context(
        self, workload: str | None, messages: Sequence[dict[str, Any]] = (),
    ) -> RouteContext:
        return RouteContext(
            available=self.registry.usable(),
            stats={n: self.registry[n].stats for n in self.registry},
            regions={n: self.registry[n].provider.region for n in self.registry},
            workload=workload,
            last_resort=self.last_resort,
            messages=messages,
            load={n: self.registry[n].load for n in self.registry},
        )

    def ranking(self) -> list[str]:
        """The strategy's order as things stand, with no side effects (status, standby)."""
        forced = self._forced()
        return [forced] if forced is not None else self.strategy.rank(
            self.chain, self._context(None))

    def preview(self) -> tuple[str, str]:
        """(where new requests go first now, where the strategy wants them when all is up).

        Side-effect free: it is what ``active_provider`` and the switch lines report.
        """
        ranked = self.strategy.rank(self.chain, self._context(None))
        usable = self.registry.usable()
        active = next((n for n in ranked if n in usable), ranked[0])
        return active, ranked[0]

    def route(
        self, messages: list[dict[str, Any]], opts: ChatOptions, *, choose: bool = True,
    ) -> Route:
        """The route of one request: the strategy's choice (``choose``: a real request
        being routed, the one call that may move the strategy), or its ranking."""
        forced = self._forced()
        if forced is not None:
            order = [forced]
        elif choose:
            order = self.strategy.choose(self.chain, self._context(opts.workload, messages))
        else:
            order = self.strategy.rank(self.chain, self._context(opts.workload))
        return Route(order=order, messages=messages, options=opts, pinned=forced is not None)

    async def probe_ahead(self) -> None:
        """While in fallback, check the providers ahead of the active one (bounded wait)."""
        if self._forced() is not None:
            return
        for name in self.chain:
            if self.registry[name].usable:
                return
            await self.monitor.maybe_probe(name, self.policy.health_check_wait)

    # -- the walk --------------------------------------------------------------------------
    async def open(
        self, messages: list[dict[str, Any]], opts: ChatOptions, *, continuable: bool = False,
    ) -> ReplyStream:
        """Walk the route until one provider starts answering; return its reply stream.

        ``continuable`` (a streaming caller) lets a reply that breaks after text be
        continued by the next provider when ``llm.mid_stream`` is ``continue``. Raises
        RequestError for the caller's own mistakes, RequestRejected when every provider
        refused the request, AllProvidersFailed when every provider failed before
        producing text.
        """
        route = self.route(messages, opts)
        if self.policy.hedge.enabled and not route.pinned:
            self.hedges.request_started()
        for round_no in range(self.policy.retry.rounds + 1):
            if round_no:
                route.new_round()
            await self.probe_ahead()
            reply = await self._round_for_a_slot(route, continuable)
            if reply is not None:
                return reply
            # Pinned (force_provider): the caller asked for that provider and no fallback.
            wait = None if route.pinned else self.policy.retry.wait(
                round_no, route.failures, time.perf_counter() - route.started)
            if wait is None:
                break
            self.reporter.retrying(round_no + 1, wait)
            await self._sleep(wait)
        reply = await self._after_loading(route)
        if reply is None:
            reply = await self._approximately(route, continuable)
        if reply is not None:
            return reply
        raise self._exhausted(route)

    async def _round_for_a_slot(self, route: Route, continuable: bool) -> ReplyStream | None:
        """A pass over the route; when every usable provider was at its cap, wait in the
        slot queue (first come first served, bounded: Overloaded past either bound) and
        pass again once a slot is free."""
        while True:
            reply = await self._round(route, continuable)
            if reply is not None or not route.full:
                return reply
            await self.queue.wait(first=route.queued)
            route.queued = True

    def _has_slot(self, name: str, route: Route) -> bool:
        """Whether this request may go to ``name`` now: a free slot, and no request that
        waited for one ahead of it (newcomers queue behind the waiters, no barging)."""
        st = self.registry[name]
        return st.has_slot and (route.queued or not self.queue or st.cap is None)

    def _passes_over(self, name: str, route: Route) -> bool:
        """``name`` is not asked in this pass: at its cap (remembered, if it may take
        traffic: the request then waits for a slot), or the last resort while a server is
        only busy (``llm.embedded.spillover``)."""
        if not self._has_slot(name, route):
            if self.registry[name].usable:
                route.full.append(name)
            return True
        return (bool(route.full) and name in self.last_resort
                and not self.policy.embedded_spillover)

    async def _round(self, route: Route, continuable: bool) -> ReplyStream | None:
        """One pass over the route: the first provider to start answering, or None."""
        hedging = self.policy.hedge.enabled and not route.pinned
        route.full.clear()
        for name in route.attempts(self.registry):
            if name in route.tried:
                continue  # a hedge target that already had its turn
            if self._passes_over(name, route):
                continue
            async with contextlib.AsyncExitStack() as attempts:
                first = await attempts.enter_async_context(self._attempt(name, route))
                delay = self.hedges.delay_for(first.provider) if hedging else None
                winner = await race(
                    first, delay=delay,
                    hedge=functools.partial(self._hedge, route, attempts, name),
                    settled=functools.partial(self._settled, route),
                )
                if winner is None:
                    continue
                if winner is not first and not first.answered and first.error is None:
                    assert delay is not None  # silent past the hedge delay: it lost
                    self.outcomes.hedge_lost(first.name, delay, winner.name)
                return self._reply(winner, route, continuable, hedged=winner is not first)
        return None

    async def _hedge(
        self, route: Route, attempts: contextlib.AsyncExitStack, slow: str,
    ) -> Attempt[ChatChunk] | None:
        """A second attempt for a slow first one (owned by the same exit stack), or None
        when no provider or no hedge budget is left."""
        free = [n for n in route.attempts(self.registry) if self._has_slot(n, route)]
        target = self.policy.hedge.target(self.registry, free, route.tried)
        if target is None or not self.hedges.take():
            return None
        self.reporter.hedging(slow, target)
        return await attempts.enter_async_context(self._attempt(target, route))

    def _attempt(self, name: str, route: Route, messages: list[dict[str, Any]] | None = None,
                 *, options: ChatOptions | None = None) -> Attempt[ChatChunk]:
        """An attempt at ``name`` for this route (``messages``: a continuation's prefill;
        ``options``: the request without a field this provider cannot express)."""
        route.tried.add(name)
        provider = self.registry[name].provider
        request = request_for(provider, messages or route.messages, options or route.options,
                              self.tokens, self.policy.max_tokens, self.reporter.logger)
        self.reporter.trying(name)
        return Attempt(name, provider, lambda: provider.stream(request), request=request,
                       ready=starts_reply, serve=functools.partial(self.registry.serve, name))

    def _settled(self, route: Route, attempt: Attempt[Any]) -> None:
        """An attempt ended without an answer: record why, and what the walk does next."""
        if (skipped := attempt.skipped) is not None:
            route.skipped.append((attempt.name, skipped))
            self.outcomes.skipped(attempt.name, skipped)
        elif (rejected := attempt.rejected) is not None:
            route.rejections.append(rejected)
            self.outcomes.rejected(attempt.name, rejected)
        elif (failure := attempt.failure) is not None:
            route.failures.append(failure)
            self.outcomes.failed(attempt.name, failure)
        else:
            assert isinstance(attempt.error, RequestError)
            raise attempt.error  # the caller's own request (DEMI's checks): no failover

    async def _after_loading(self, route: Route) -> ReplyStream | None:
        """Everything failed but a provider was only still loading: wait for it, ask once.

        Right after start-up the embedded model takes a second or two to load; a message
        that arrives then, with both servers down, waits for it instead of failing.
        """
        loading = [e.provider for e in route.failures if isinstance(e, EmbeddedModelLoading)]
        for name in loading:
            if name not in self.registry:
                continue  # a discovered provider that left meanwhile
            if not await self.registry[name].provider.wait_ready(self.policy.load_wait):
                continue
            async with self._attempt(name, route) as attempt:
                await attempt.wait()
                if attempt.answered:
                    return self._reply(attempt, route, continuable=False, hedged=False)
                self._settled(route, attempt)
        return None

    async def _approximately(self, route: Route, continuable: bool) -> ReplyStream | None:
        """No provider could serve the request as asked: the first one that can serve it
        without the field it cannot express (as its own OpenAI layer would) answers, and
        the reply says which field was left out (``ReplyStream.degraded``)."""
        for name, skip in list(route.skipped):
            if not skip.approximate:
                continue
            extra = {k: v for k, v in route.options.extra.items() if k != skip.field}
            options = dataclasses.replace(route.options, extra=extra)
            async with self._attempt(name, route, options=options) as attempt:
                await attempt.wait()
                if attempt.answered:
                    self.reporter.degraded(name, skip)
                    return self._reply(attempt, route, continuable, hedged=False,
                                       degraded=(skip.field,))
                if attempt.skipped is not None:
                    continue  # something else it cannot say either: already counted
                self._settled(route, attempt)
        return None

    def _exhausted(self, route: Route) -> DemiError:
        """The error for a request no provider started answering."""
        if route.failures:
            return self._all_failed(route)
        if route.rejections:
            return self.reporter.all_rejected(route.rejections)
        if route.skipped:
            fields = sorted({skip.field for _, skip in route.skipped})
            reasons = "; ".join(f"{self.registry.display(name)}: {skip}"
                                for name, skip in route.skipped)
            return RequestError(
                f"no provider can take this request: {' and '.join(fields)} "
                f"{'is' if len(fields) == 1 else 'are'} not supported by any provider in "
                f"the chain ({reasons})"
            )
        return self._all_failed(route)

    def _all_failed(self, route: Route) -> AllProvidersFailed:
        errors: list[ProviderError] = [*route.failures, *route.rejections]
        return self.reporter.all_failed(
            route.order, errors, forced=self._forced(), chain=self.chain,
            fallback_enabled=self.policy.fallback_enabled,
        )

    # -- the reply -------------------------------------------------------------------------
    def _reply(
        self, winner: Attempt[ChatChunk], route: Route, continuable: bool, *, hedged: bool,
        degraded: tuple[str, ...] = (),
    ) -> ReplyStream:
        """Hand the winner's open reply to the caller as a :class:`ReplyStream`."""
        name = winner.name
        assert winner.first is not None and winner.request is not None
        # A fallback happened if anything the strategy preferred was down, failed or slow.
        ahead = route.order[: route.order.index(name)] if name in route.order else []
        fallback = (bool(route.failures) or hedged
                    or any(n not in self.registry or not self.registry[n].usable
                           for n in ahead))
        self.outcomes.answering(name, winner.ttft, fallback=fallback, hedged=hedged,
                                chain=self.chain)
        spilled = route.full[0] if route.full else None  # passed over for being at its cap
        if spilled is not None:
            self.outcomes.spilled(spilled, name)
        ttft = (winner.first_at or route.started) - route.started if winner.first.text else None
        resume = (functools.partial(self.resume, route)
                  if continuable and self.policy.mid_stream == "continue" and not route.pinned
                  else None)
        return ReplyStream(
            provider=name,
            display_name=winner.provider.display_name,
            model=winner.provider.resolved_model(winner.request),
            fallback_used=fallback,
            attempts=tuple((e.provider, e.reason) for e in route.failures),
            errors=tuple(route.failures),
            first=winner.first,
            rest=winner.hand_off(),
            started=route.started,
            first_at=winner.first_at or time.perf_counter(),
            on_finish=functools.partial(self.outcomes.finished, name, winner.request,
                                        route.messages, route.started, ttft, fallback),
            resume=resume,
            hedged=hedged,
            degraded=degraded,
            spilled_from=spilled,
            estimate_usage=functools.partial(self._estimate_usage, winner.provider,
                                             winner.request),
        )

    def _estimate_usage(self, provider: Provider, request: ChatRequest,
                        text: str) -> tuple[int, int]:
        """(prompt, completion) tokens as DEMI estimates them for this provider's model."""
        key = f"{provider.name}:{provider.model}"
        return (self.tokens.estimate(request.messages, key),
                self.tokens.estimate_text(text, key))

    async def resume(self, route: Route, text: str, used: frozenset[str]) -> Continuation | None:
        """Ask the next provider (not one that served this reply) to continue ``text``.

        The request is the conversation plus ``text`` as a trailing assistant message: both
        Ollama and OpenAI-compatible servers treat that as the start of their reply. The
        route is the one chosen for the request (a continuation moves no strategy). A
        failure before the continuation's first chunk counts against that provider, and the
        next one is tried; a refusal of the prefill is not held against it; None when no
        provider is left.
        """
        prefill = [*route.messages, {"role": "assistant", "content": text}]
        queue = [n for n in route.attempts(self.registry)
                 if n not in used and self.registry[n].has_slot]
        waited: set[str] = set()  # still loading (the embedded model): waited for, once
        while queue:
            name = queue.pop(0)
            if name not in self.registry:
                continue  # a discovered provider that left meanwhile
            async with self._attempt(name, route, prefill) as attempt:
                await attempt.wait()
                if attempt.answered:
                    assert attempt.first is not None and attempt.request is not None
                    self.reporter.continued(used, name, len(text))
                    ttft = attempt.ttft or 0.0
                    return Continuation(
                        provider=name, display_name=attempt.provider.display_name,
                        first=attempt.first, rest=attempt.hand_off(),
                        on_finish=functools.partial(
                            self.outcomes.finished, name, attempt.request, route.messages,
                            attempt.started, ttft, True),
                    )
            if attempt.skipped is not None or attempt.rejected is not None:
                continue  # this server cannot take the prefill: not its failure
            failure = attempt.failure
            if failure is None:
                assert isinstance(attempt.error, RequestError)
                continue  # DEMI cannot say the prefill to it: try the next
            self.outcomes.failed(name, failure)
            if (isinstance(failure, EmbeddedModelLoading) and name not in waited
                    and await attempt.provider.wait_ready(self.policy.load_wait)):
                waited.add(name)
                queue.append(name)
        return None
