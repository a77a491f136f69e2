"""``UnifiedLLMInference``: the one object the rest of DEMI talks to.

Where things happen:

* the order of providers for a request: ``_attempt_order`` (routing strategy + breakers);
* where a provider is called: ``open_stream`` (every other call goes through it);
* what a failure means for traffic: the per-provider :class:`CircuitBreaker`;
* when providers are checked: :class:`HealthMonitor`.

``OllamaInference`` and ``LMStudioInference`` are re-exported here because the guide names
this module as their home.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from src.core.config import DemiConfig

from .breaker import BreakerPolicy, BreakerState, CircuitBreaker
from .clock import Clock, SystemClock
from .errors import (
    AllProvidersFailed,
    Closed,
    ConfigError,
    EmbeddedModelLoading,
    ProviderError,
    RequestError,
    UnknownProviderError,
)
from .factory import build_providers, resolve_chain
from .health import HealthMonitor, ProviderState
from .provider import Provider
from .providers.lmstudio import LMStudioInference
from .providers.ollama import OllamaInference
from .requests import ChatOptions, parse_options, validate_messages
from .routing import RouteContext, Strategy, make_strategy
from .status import StatusTracker
from .stream import ReplyStream
from .tokens import TokenEstimator
from .types import ChatChunk, ChatRequest, ChatResult, HealthReport, Message

__all__ = ["LMStudioInference", "OllamaInference", "UnifiedLLMInference"]


class UnifiedLLMInference:
    """Routes chat requests over the provider chain with failover, health checks and breakers.

    ``config`` is what :func:`src.core.config.load_config` returns, or a plain dict shaped
    like ``defaults.yaml`` (laid over the defaults). ``clock`` and ``providers`` are for
    tests: an injected clock, or ready-made provider objects keyed by name.
    """

    def __init__(
        self,
        config: DemiConfig | Mapping[str, Any] | None = None,
        logger: logging.Logger | None = None,
        *,
        clock: Clock | None = None,
        providers: Mapping[str, Provider] | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        if isinstance(config, DemiConfig):
            self.config = config
        else:
            self.config = DemiConfig.from_mapping(config or {})
        llm = self.config.llm
        self.logger = logger or logging.getLogger("demi.llm")
        self._clock = clock or SystemClock()
        self._health_check_interval: float = llm.health_check_interval
        built = dict(providers) if providers is not None else build_providers(
            self.config, self.logger
        )
        self.chain: list[str] = resolve_chain(llm, list(built))
        if not self.chain:
            raise ConfigError(
                f"No usable provider: llm.provider = {llm.provider!r} is not available "
                f"(configured: {sorted(built)})"
            )
        self.primary = self.chain[0]
        self._states: dict[str, ProviderState] = {}
        policy = BreakerPolicy.from_config(llm)
        for name in self.chain:
            breaker = CircuitBreaker(name, self._clock, policy, listener=self._on_breaker)
            self._states[name] = ProviderState(built[name], breaker)
        self._unused = [p for n, p in built.items() if n not in self._states]
        self.strategy = strategy or make_strategy(llm.routing)
        self.tokens = TokenEstimator()
        self.status = StatusTracker(self._clock)
        self.monitor = HealthMonitor(
            self._states, self._clock,
            interval=lambda: self._health_check_interval,
            on_report=self._on_health_report,
            logger=self.logger,
        )
        self._forced: str | None = None
        self._active: str = self.primary
        self._started = False
        self._initial_check_done = False
        self._closed = False

    # -- the guide's names -------------------------------------------------------------
    @property
    def ollama(self) -> Provider | None:
        st = self._states.get("ollama")
        return st.provider if st else None

    @property
    def lmstudio(self) -> Provider | None:
        st = self._states.get("lmstudio")
        return st.provider if st else None

    @property
    def providers(self) -> dict[str, Provider]:
        """The providers in the chain, in failover order."""
        return {n: st.provider for n, st in self._states.items()}

    @property
    def active_provider(self) -> str:
        """The provider new requests go to first (the pinned one while forced)."""
        return self._forced or self._active

    def display(self, name: str) -> str:
        st = self._states.get(name)
        return st.provider.display_name if st else name

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> UnifiedLLMInference:
        try:
            await self.start()
        except BaseException:
            await self.close()  # sessions opened by the start-up checks must not leak
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Check every provider once, log the provider in use, start background checks."""
        if self._started:
            return
        self._started = True
        for st in self._states.values():
            await st.provider.start()
        await self.monitor.check_all(max_age=0)
        self._initial_check_done = True
        self._active = self._compute_active()
        if not self._states[self._active].usable:
            reasons = "; ".join(
                f"{n}: {st.last_error or 'not ready'}" for n, st in self._states.items()
            )
            self.logger.warning("No LLM provider is reachable yet (%s)", reasons)
        elif self._active == self.primary:
            self.logger.info("Using %s provider", self.display(self.primary))
        else:
            self.logger.info(
                "%s unavailable, switched to %s provider",
                self.display(self.primary), self.display(self._active),
            )
        self.monitor.start()

    async def close(self) -> None:
        """Stop background checks and close every provider's sessions (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self.monitor.stop()
        for provider in [*(st.provider for st in self._states.values()), *self._unused]:
            await provider.close()

    # -- manual selection --------------------------------------------------------------
    def force_provider(self, name: str | None) -> None:
        """Pin every request to ``name`` (no fallback), or ``None`` for automatic selection."""
        if name is not None and name not in self._states:
            raise UnknownProviderError(name, list(self._states))
        if name == self._forced:
            return
        self._forced = name
        if name is None:
            self.logger.info("Automatic provider selection restored; using %s provider",
                             self.display(self._active))
        else:
            self.logger.info("Using %s provider (pinned by force_provider)", self.display(name))
        self.status.record_switch(self._active, name or self._active, "force_provider")

    @property
    def forced_provider(self) -> str | None:
        return self._forced

    # -- health ------------------------------------------------------------------------
    async def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Per-provider state: healthy, circuit, last check time, last error, latency.

        Results come from the cache unless older than the check interval (or ``refresh``).
        """
        await self.monitor.check_all(max_age=0 if refresh else None)
        return {name: self.provider_status(name) for name in self._states}

    async def wait_loading(self, timeout: float) -> None:  # noqa: ASYNC109 (public API)
        """Give providers that are still loading a model up to ``timeout`` s, then re-check them.

        For one-shot reports (``status``): a model that is seconds from ready should be
        reported as ready, not as "loading".
        """
        loading = [n for n, st in self._states.items() if st.report and st.report.loading]
        await asyncio.gather(*(self._states[n].provider.wait_ready(timeout) for n in loading))
        await asyncio.gather(*(self.monitor.check(n, max_age=0) for n in loading))

    def provider_status(self, name: str) -> dict[str, Any]:
        st = self._states[name]
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
            "active": name == self.active_provider,
            "stats": st.stats.as_dict(),
        }

    def _on_health_report(self, st: ProviderState, report: HealthReport) -> None:
        if report.healthy:
            st.breaker.record_success()
        elif not report.loading:
            reason = report.error or "health check failed"
            if self._initial_check_done:
                st.breaker.record_failure(reason)
            else:
                st.breaker.force_open(reason)  # never seen up: do not send it traffic first
        if self._initial_check_done:
            self._update_active("health")

    def _on_breaker(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.status.record_breaker(name, old.value, new.value, reason)
        self.monitor.wake()

    def _compute_active(self) -> str:
        for name in self.chain:
            if self._states[name].usable:
                return name
        return self.primary

    def _update_active(self, cause: str) -> None:
        new = self._compute_active()
        old = self._active
        if new == old:
            return
        self._active = new
        new_d, old_d = self.display(new), self.display(old)
        if new == self.primary:
            reason = f"{new_d} recovered"
            self.logger.info("%s recovered, switched back to %s provider", new_d, new_d)
        elif cause == "request":
            why = self._states[old].last_error
            reason = f"{old_d} inference failed" + (f": {why}" if why else "")
            self.logger.info("Switched to %s provider", new_d)
        else:
            why = self._states[old].last_error
            reason = f"{old_d} unavailable" + (f": {why}" if why else "")
            self.logger.info("%s unavailable, switched to %s provider", old_d, new_d)
        self.status.record_switch(old, new, reason)

    # -- chat --------------------------------------------------------------------------
    async def chat(self, messages: Sequence[Message], **options: Any) -> str:
        """The reply text (the guide's ``await llm.chat(messages)``)."""
        return (await self.chat_detailed(messages, **options)).text

    async def chat_detailed(self, messages: Sequence[Message], **options: Any) -> ChatResult:
        """The reply with provider, model, fallback flag, token counts and latency."""
        reply = await self.open_stream(messages, **options)
        return await reply.collect()

    async def stream_chat(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[str]:
        """Text chunks as they arrive; failover happens before the first one."""
        reply = await self.open_stream(messages, **options)
        try:
            async for chunk in reply:
                if chunk.text:
                    yield chunk.text
        finally:
            await reply.aclose()

    async def open_stream(self, messages: Sequence[Message], **options: Any) -> ReplyStream:
        """Walk the provider order until one starts answering; return its reply stream.

        Raises RequestError for the caller's own mistakes (no failover), AllProvidersFailed
        when every provider failed before producing text.
        """
        if self._closed:
            raise Closed("UnifiedLLMInference is closed")
        if not self._started:
            await self.start()
        msgs = validate_messages(messages)
        opts = parse_options(options)
        started = time.perf_counter()
        await self._probe_ahead_of_active()
        order, preferred = self._attempt_order(opts.workload)
        errors: list[ProviderError] = []
        for name in order:
            st = self._states[name]
            provider = st.provider
            self.logger.debug("Using %s provider", provider.display_name)
            request = self._request_for(provider, msgs, opts)
            chunks = provider.stream(request).__aiter__()
            try:
                first = await self._first_chunk(name, chunks)
            except RequestError:
                st.stats.caller_errors += 1
                await _aclose(chunks)
                raise
            except ProviderError as exc:
                await _aclose(chunks)
                self._record_failure(st, exc)
                errors.append(exc)
                # Say why traffic moves now, before a health probe can report it first.
                self._update_active("request")
                continue
            except BaseException:
                await _aclose(chunks)  # cancelled while waiting: release the connection now
                raise
            # A fallback happened if anything the strategy preferred was down or failed.
            ahead = preferred[: preferred.index(name)]
            fallback = bool(errors) or any(not self._states[n].usable for n in ahead)
            return self._reply(st, request, first, chunks, errors, fallback, started)
        reply = await self._after_loading(msgs, opts, errors, preferred, started)
        if reply is not None:
            return reply
        raise self._all_failed(order, errors)

    async def _after_loading(
        self, msgs: list[dict[str, Any]], opts: ChatOptions, errors: list[ProviderError],
        preferred: list[str], started: float,
    ) -> ReplyStream | None:
        """Everything failed but a provider was only still loading: wait for it, ask once.

        Right after start-up the embedded model takes a second or two to load; a message
        that arrives then, with both servers down, waits for it instead of failing.
        """
        for exc in errors:
            if not isinstance(exc, EmbeddedModelLoading):
                continue
            st = self._states[exc.provider]
            provider = st.provider
            if not await provider.wait_ready(self.config.llm.embedded.load_wait):
                continue
            request = self._request_for(provider, msgs, opts)
            chunks = provider.stream(request).__aiter__()
            try:
                first = await self._first_chunk(exc.provider, chunks)
            except ProviderError as again:
                await _aclose(chunks)
                self._record_failure(st, again)
                errors.append(again)
                continue
            except BaseException:
                await _aclose(chunks)
                raise
            return self._reply(st, request, first, chunks, errors, True, started)
        return None

    def _reply(
        self, st: ProviderState, request: ChatRequest, first: ChatChunk,
        chunks: AsyncIterator[ChatChunk], errors: list[ProviderError], fallback: bool,
        started: float,
    ) -> ReplyStream:
        provider = st.provider
        if provider.name == "embedded" and fallback:
            self.logger.warning(
                "%s; the embedded model is answering", self._failed_summary(self.chain)
            )
        return ReplyStream(
            provider=provider.name,
            display_name=provider.display_name,
            model=provider.resolved_model(request),
            fallback_used=fallback,
            attempts=tuple((e.provider, e.reason) for e in errors),
            errors=tuple(errors),
            first=first,
            rest=chunks,
            started=started,
            first_at=time.perf_counter(),
            on_finish=functools.partial(self._finish, st, request),
        )

    # -- internals of the chain walk -----------------------------------------------------
    async def _probe_ahead_of_active(self) -> None:
        """While in fallback, check the providers ahead of the active one (bounded wait)."""
        if self._forced is not None:
            return
        wait = self.config.llm.health_check_wait
        for name in self.chain:
            st = self._states[name]
            if st.usable:
                return
            await self.monitor.maybe_probe(name, wait)

    def _attempt_order(self, workload: str | None) -> tuple[list[str], list[str]]:
        """(the order to try, the strategy's own order before open circuits moved back)."""
        if self._forced is not None:
            return [self._forced], [self._forced]
        usable = frozenset(n for n, st in self._states.items() if st.usable)
        ctx = RouteContext(
            available=usable,
            stats={n: st.stats for n, st in self._states.items()},
            regions={n: st.provider.region for n, st in self._states.items()},
            workload=workload,
        )
        ordered = self.strategy.order(self.chain, ctx)
        # Providers whose circuit is open go last: a last resort, never skipped entirely.
        attempts = [n for n in ordered if n in usable] + [n for n in ordered if n not in usable]
        return attempts, ordered

    def _request_for(
        self, provider: Provider, msgs: list[dict[str, Any]], opts: ChatOptions,
    ) -> ChatRequest:
        window = provider.context_window
        reply_budget = min(opts.max_tokens or self.config.llm.max_tokens, window // 2)
        model_key = f"{provider.name}:{provider.model}"
        fitted, report = self.tokens.fit(msgs, window - reply_budget, model_key)
        if report.dropped or report.shortened:
            self.logger.debug(
                "Trimmed conversation for %s: dropped %d message(s), shortened %d "
                "(about %d tokens for a budget of %d)",
                provider.name, report.dropped, report.shortened,
                report.estimated_tokens, report.budget,
            )
        model = opts.model_for(provider.name)
        return ChatRequest(
            messages=fitted, model=model, temperature=opts.temperature,
            max_tokens=opts.max_tokens, stop=opts.stop, options=opts.extra,
        )

    @staticmethod
    async def _first_chunk(name: str, chunks: AsyncIterator[ChatChunk]) -> ChatChunk:
        """Read until the first text or the end; nothing reaches the caller before this."""
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                raise ProviderError(name, "the reply ended before any text") from None
            if chunk.text or chunk.done:
                return chunk

    def _record_failure(self, st: ProviderState, exc: ProviderError) -> None:
        st.last_error = exc.reason
        if not exc.counts_against_health:  # loading, not broken: no alarm
            self.logger.info("%s not ready: %s", st.provider.display_name, exc.reason)
            return
        self.logger.warning("%s inference failed: %s", st.provider.display_name, exc.reason)
        if exc.counts_against_health:
            st.stats.record_failure()
            st.breaker.record_failure(exc.reason, hold=getattr(exc, "retry_after", None))
        self.status.record_failure(st.provider.name, exc.reason)

    def _finish(
        self, st: ProviderState, request: ChatRequest, reply: ReplyStream,
        final: ChatChunk | None, error: ProviderError | None,
    ) -> None:
        if error is not None:
            self._record_failure(st, error)
            self._update_active("request")
            return
        assert final is not None
        before = st.breaker.state
        st.breaker.record_success()
        if st.breaker.state is not before:
            self._update_active("request")
        latency = time.perf_counter() - reply.started
        st.stats.record_success(
            latency, reply.time_to_first_token, final.prompt_tokens,
            final.completion_tokens, reply.fallback_used,
        )
        model_key = f"{st.provider.name}:{st.provider.model}"
        self.tokens.calibrate(model_key, request.messages, final.prompt_tokens)
        self.status.record_request(st.provider.name, reply.fallback_used)

    def _failed_summary(self, order: Sequence[str]) -> str:
        names = [n for n in order if n != "embedded"]
        if "ollama" in names and "lmstudio" in names:
            return "Both Ollama and LMStudio providers failed"
        return "All providers failed (" + ", ".join(self.display(n) for n in names) + ")"

    def _all_failed(
        self, order: Sequence[str], errors: Sequence[ProviderError],
    ) -> AllProvidersFailed:
        reasons = "; ".join(f"{self.display(e.provider)}: {e.reason}" for e in errors)
        if self._forced is not None:
            name = self.display(self._forced)
            message = (
                f"{name} provider failed (pinned with force_provider): {reasons}. "
                "Call force_provider(None) to allow fallback, or fix the provider."
            )
        elif len(self.chain) == 1 and not self.config.llm.enable_fallback:
            name = self.display(self.primary)
            message = (
                f"{name} provider failed and fallback is disabled: {reasons}. "
                f"Set DEMI_ENABLE_LLM_FALLBACK=true to fall back to another provider, "
                f"or fix {name}."
            )
        else:
            hints = []
            for n in order:
                url = self._states[n].provider.base_url
                if n == "ollama":
                    hints.append(f"curl {url}/api/tags")
                elif url:
                    hints.append(f"curl {url}/v1/models")
            message = f"{self._failed_summary(order)}: {reasons}."
            if hints:
                message += " Check that a provider is running: " + ", ".join(hints) + "."
        self.status.record_exhausted()
        return AllProvidersFailed(message, errors)


async def _aclose(chunks: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
