"""The chain walk: the order to try providers in, failover, and the first-token race.

For one request: ask the routing strategy for an order (providers whose circuit is open
go last: a last resort, never skipped), call each in turn until one produces its first
text, and hand that provider's reply out as a :class:`ReplyStream`. Everything before the
first text can fail over invisibly; after it, the reply belongs to that provider.

The walk never knows which provider or strategy it is talking to. It reports outcomes to
the pool (state), the reporter (log lines, messages) and ``on_change`` (the active
provider may have moved).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..errors import (
    AllProvidersFailed,
    CannotExpress,
    EmbeddedModelLoading,
    ProviderError,
    ProviderTimeout,
    RequestError,
)
from ..options import ChatOptions, request_for
from ..providers.base import Provider
from ..report import Reporter
from ..routing.strategies import Outcome, RouteContext, Strategy
from ..state.health import HealthMonitor
from ..state.registry import ProviderPool
from ..tokens import TokenEstimator
from ..types import ChatChunk, ChatRequest
from .hedge import Attempt, HedgePolicy, aclose_chunks, first_chunk, first_token
from .policy import WalkPolicy
from .reply import Continuation, ReplyStream, Resume
from .retry import RetryPolicy


class ChainWalker:
    def __init__(
        self,
        pool: ProviderPool,
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
        self.pool = pool
        self.last_resort = last_resort
        self.chain = list(pool)
        self.strategy = strategy
        self.monitor = monitor
        self.reporter = reporter
        self.policy = policy
        self.tokens = TokenEstimator()
        self.hedge = HedgePolicy(policy.hedge)
        self.retry = RetryPolicy(policy.retry)
        self._sleep = sleep
        self._forced = forced
        self._on_change = on_change

    # -- order -----------------------------------------------------------------------------
    def _context(
        self, workload: str | None, usable: frozenset[str], msgs: list[dict[str, Any]] | None,
    ) -> RouteContext:
        return RouteContext(
            available=usable,
            stats={n: self.pool[n].stats for n in self.pool},
            regions={n: self.pool[n].provider.region for n in self.pool},
            workload=workload,
            last_resort=self.last_resort,
            messages=msgs or (),
        )

    def attempt_order(
        self, workload: str | None, msgs: list[dict[str, Any]] | None = None,
    ) -> tuple[list[str], list[str]]:
        """(the order to try, the strategy's own order before open circuits moved back)."""
        forced = self._forced()
        if forced is not None:
            return [forced], [forced]
        usable = self.pool.usable()
        ordered = self.strategy.order(self.chain, self._context(workload, usable, msgs))
        attempts = [n for n in ordered if n in usable] + [n for n in ordered if n not in usable]
        return attempts, ordered

    def preview(self) -> tuple[str, str]:
        """(where new requests go first now, where the strategy wants them when all is up).

        Side-effect free: it is what ``active_provider`` and the switch lines report.
        """
        usable = self.pool.usable()
        ordered = self.strategy.preview(self.chain, self._context(None, usable, None))
        active = next((n for n in ordered if n in usable), ordered[0])
        return active, ordered[0]

    async def probe_ahead(self) -> None:
        """While in fallback, check the providers ahead of the active one (bounded wait)."""
        if self._forced() is not None:
            return
        for name in self.chain:
            if self.pool[name].usable:
                return
            await self.monitor.maybe_probe(name, self.policy.health_check_wait)

    # -- the walk --------------------------------------------------------------------------
    async def open(
        self, msgs: list[dict[str, Any]], opts: ChatOptions, *, continuable: bool = False,
    ) -> ReplyStream:
        """Walk the order until one provider starts answering; return its reply stream.

        ``continuable`` (a streaming caller) lets a reply that breaks after text be
        continued by the next provider when ``llm.mid_stream`` is ``continue``. Raises
        RequestError for the caller's own mistakes (no failover), AllProvidersFailed when
        every provider failed before producing text. Anything else a provider raises
        is a DEMI bug: it propagates untouched and counts against no provider.
        """
        started = time.perf_counter()
        round_no = 0
        unsaid: list[CannotExpress] = []
        while True:
            await self.probe_ahead()
            order, errors, reply = await self._walk(msgs, opts, continuable, started, unsaid)
            if reply is not None:
                return reply
            # Pinned (force_provider): the caller asked for that provider and no fallback.
            wait = None if self._forced() is not None or not errors else self.retry.wait(
                round_no, errors, time.perf_counter() - started)
            if wait is None:
                break
            self.reporter.retrying(round_no + 1, wait)
            await self._sleep(wait)
            round_no += 1
        reply = await self._after_loading(msgs, opts, errors, started)
        if reply is not None:
            return reply
        if unsaid and not errors:
            raise RequestError(
                f"no provider can take this request: {unsaid[0]} "
                f"({unsaid[0].field} is not supported by any provider in the chain)"
            )
        raise self._all_failed(order, errors)

    async def _walk(
        self, msgs: list[dict[str, Any]], opts: ChatOptions, continuable: bool, started: float,
        unsaid: list[CannotExpress],
    ) -> tuple[list[str], list[ProviderError], ReplyStream | None]:
        """One round over the order: (the order, its failures, the reply if one started).

        Providers that cannot express the request are skipped (nobody's fault) and added
        to ``unsaid``.
        """
        order, preferred = self.attempt_order(opts.workload, msgs)
        errors: list[ProviderError] = []
        tried: set[str] = set()
        hedging = self.hedge.enabled and self._forced() is None
        if hedging:
            self.hedge.request_started()

        def start(name: str) -> Attempt:
            tried.add(name)
            self.reporter.trying(name)
            request = self._request_for(self.pool[name].provider, msgs, opts)
            chunks = self.pool[name].provider.stream(request).__aiter__()
            task = asyncio.ensure_future(first_chunk(name, chunks))
            return Attempt(name, request, chunks, time.perf_counter(), task)

        def failed(att: Attempt, exc: BaseException) -> None:
            if isinstance(exc, CannotExpress):
                # Nobody's fault: this kind of server cannot say it; the next one may.
                self.reporter.logger.debug("%s skipped: %s", att.name, exc)
                unsaid.append(exc)
                return
            if isinstance(exc, RequestError):
                self.pool.record_caller_error(att.name)
                return
            assert isinstance(exc, ProviderError)
            self._failed(att.name, exc)
            errors.append(exc)
            # Say why traffic moves now, before a health probe can report it first.
            self._on_change("request")

        hedged: list[str] = []  # one hedge per request

        def hedge_for(slow: str) -> Callable[[], Attempt | None]:
            def second() -> Attempt | None:
                target = self.hedge.target(self.pool, order, tried)
                if hedged or target is None or not self.hedge.take():
                    return None
                hedged.append(target)
                self.reporter.hedging(slow, target)
                return start(target)
            return second

        for name in order:
            if name in tried:
                continue
            att = start(name)
            delay = self.hedge.delay_for(self.pool[name].provider) if hedging else None
            winner = await first_token(att, delay=delay, hedge=hedge_for(name), failed=failed)
            if winner is None:
                continue
            ttft = time.perf_counter() - winner.started
            self.hedge.observe_ttft(winner.name, ttft)
            hedge_won = winner is not att
            self.hedge.hedge_wins += hedge_won
            if hedge_won and att.task.cancelled():
                # Silent past the hedge delay while another provider answered: a hung
                # server must open its circuit now, not after a full first-token timeout
                # on some later request that found the hedge budget spent.
                self._failed(att.name, ProviderTimeout(
                    att.name, f"no first token within {delay:g}s; "
                    f"{self.pool[winner.name].provider.display_name} answered first"))
                self._on_change("request")
            # A fallback happened if anything the strategy preferred was down or failed.
            ahead = preferred[: preferred.index(winner.name)]
            fallback = (bool(errors) or hedge_won
                        or any(not self.pool[n].usable for n in ahead))
            resume = (functools.partial(self.resume, msgs, opts)
                      if continuable and self.policy.mid_stream == "continue"
                      and self._forced() is None else None)  # pinned: no other provider
            won = self._reply(winner.name, winner.request, winner.task.result(),
                              winner.chunks, errors, fallback, started, resume)
            won.hedged = hedge_won
            return order, errors, won
        return order, errors, None

    async def _after_loading(
        self, msgs: list[dict[str, Any]], opts: ChatOptions, errors: list[ProviderError],
        started: float,
    ) -> ReplyStream | None:
        """Everything failed but a provider was only still loading: wait for it, ask once.

        Right after start-up the embedded model takes a second or two to load; a message
        that arrives then, with both servers down, waits for it instead of failing.
        """
        for exc in errors:
            if not isinstance(exc, EmbeddedModelLoading):
                continue
            name = exc.provider
            provider = self.pool[name].provider
            if not await provider.wait_ready(self.policy.load_wait):
                continue
            request = self._request_for(provider, msgs, opts)
            chunks = provider.stream(request).__aiter__()
            try:
                first = await first_chunk(name, chunks)
            except ProviderError as again:
                await aclose_chunks(chunks)
                self._failed(name, again)
                errors.append(again)
                continue
            except BaseException:
                await aclose_chunks(chunks)
                raise
            return self._reply(name, request, first, chunks, errors, True, started)
        return None

    async def resume(
        self, msgs: list[dict[str, Any]], opts: ChatOptions, text: str, used: frozenset[str],
    ) -> Continuation | None:
        """Ask the next provider (not one that served this reply) to continue ``text``.

        The request is the conversation plus ``text`` as a trailing assistant message: both
        Ollama and OpenAI-compatible servers treat that as the start of their reply. Failures
        before the continuation's first chunk count against that provider, and the next one
        is tried; None when no provider is left.
        """
        order, _ = self.attempt_order(opts.workload, msgs)
        prefill = [*msgs, {"role": "assistant", "content": text}]
        queue = [n for n in order if n not in used]
        loading: list[str] = []  # still loading (the embedded model): waited for, once
        while queue:
            name = queue.pop(0)
            provider = self.pool[name].provider
            request = self._request_for(provider, prefill, opts)
            started = time.perf_counter()
            chunks = provider.stream(request).__aiter__()
            try:
                first = await first_chunk(name, chunks)
            except RequestError:  # the server refused the prefill: not its failure, skip it
                await aclose_chunks(chunks)
                continue
            except ProviderError as exc:
                await aclose_chunks(chunks)
                self._failed(name, exc)
                self._on_change("request")
                if (isinstance(exc, EmbeddedModelLoading) and name not in loading
                        and await provider.wait_ready(self.policy.load_wait)):
                    loading.append(name)
                    queue.append(name)
                continue
            except BaseException:
                await aclose_chunks(chunks)
                raise
            self.reporter.continued(used, name, len(text))
            return Continuation(
                provider=name, display_name=provider.display_name, first=first, rest=chunks,
                on_finish=functools.partial(self._finish_part, name, request, started,
                                            time.perf_counter() - started),
            )
        return None

    def _all_failed(self, order: list[str], errors: list[ProviderError]) -> AllProvidersFailed:
        return self.reporter.all_failed(
            order, errors, forced=self._forced(), chain=self.chain,
            fallback_enabled=self.policy.fallback_enabled,
        )

    def _reply(
        self, name: str, request: ChatRequest, first: ChatChunk,
        chunks: AsyncIterator[ChatChunk], errors: list[ProviderError], fallback: bool,
        started: float, resume: Resume | None = None,
    ) -> ReplyStream:
        provider = self.pool[name].provider
        self.reporter.answering(name, fallback, self.chain)
        return ReplyStream(
            provider=name,
            display_name=provider.display_name,
            model=provider.resolved_model(request),
            fallback_used=fallback,
            attempts=tuple((e.provider, e.reason) for e in errors),
            errors=tuple(errors),
            first=first,
            rest=chunks,
            started=started,
            first_at=time.perf_counter(),
            on_finish=functools.partial(self._finish, name, request),
            resume=resume,
        )

    def _request_for(
        self, provider: Provider, msgs: list[dict[str, Any]], opts: ChatOptions,
    ) -> ChatRequest:
        return request_for(provider, msgs, opts, self.tokens, self.policy.max_tokens,
                           self.reporter.logger)

    # -- outcomes --------------------------------------------------------------------------
    def _failed(self, name: str, exc: ProviderError) -> None:
        self.reporter.failed(name, exc)
        self.pool.record_failure(name, exc)
        if exc.counts_against_health:
            self.strategy.observe(Outcome(name, ok=False))

    def _finish(
        self, name: str, request: ChatRequest, reply: ReplyStream,
        final: ChatChunk | None, error: ProviderError | None,
    ) -> None:
        self._record(name, request, reply.started, reply.time_to_first_token,
                     reply.fallback_used, final, error)

    def _finish_part(
        self, name: str, request: ChatRequest, started: float, ttft: float,
        reply: ReplyStream, final: ChatChunk | None, error: ProviderError | None,
    ) -> None:
        """The end of a continuation's part: its own timings; it is always a fallback."""
        self._record(name, request, started, ttft, True, final, error)

    def _record(
        self, name: str, request: ChatRequest, started: float, ttft: float | None,
        fallback: bool, final: ChatChunk | None, error: ProviderError | None,
    ) -> None:
        if error is not None:
            self._failed(name, error)
            self._on_change("request")
            return
        assert final is not None
        moved = self.pool.record_success(
            name, time.perf_counter() - started, ttft,
            final.prompt_tokens, final.completion_tokens, fallback,
        )
        if moved:
            self._on_change("request")
        self.strategy.observe(Outcome(name, ok=True, ttft=ttft, messages=request.messages,
                                      fallback=fallback))
        provider = self.pool[name].provider
        self.tokens.calibrate(f"{provider.name}:{provider.model}", request.messages,
                              final.prompt_tokens)
        self.reporter.history.record_request(name, fallback)
