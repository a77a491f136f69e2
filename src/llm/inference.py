"""``UnifiedLLMInference``: the one object the rest of DEMI talks to, a thin facade.

It builds the parts, owns their lifecycle and forwards to them; each part has one job:

* ``walk/``        the chain walk: one request over the provider order, attempts, the
                   hedge race, retries, continuation (:class:`ChainWalker`);
* ``routing/``     the strategy that orders providers (built by ``routing/build.py``);
* ``state/``       provider state with one owner (:class:`ProviderRegistry`), health checks
                   (:class:`HealthMonitor`), warm standby, the history people read;
* ``report.py``    the guide's log lines and messages, ``/status`` and the CLI rows
                   (:class:`Reporter`);
* ``factory.py``   providers and the chain from config;
* ``discovery/``   engines already running on loopback, joining the chain by themselves
                   (:class:`DiscoveredProviders`).

``OllamaInference`` and ``LMStudioInference`` are re-exported here because the guide names
this module as their home.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from ..core.config import DemiConfig
from ..core.tasks import cancel_and_wait
from .clock import Clock, SystemClock
from .discovery import DiscoveredProviders, Found
from .errors import Closed, ConfigError, UnknownProviderError
from .factory import (
    build_entry,
    build_providers,
    last_resort,
    provider_caps,
    provider_weights,
    resolve_chain,
)
from .options import parse_options, validate_messages
from .providers.base import Provider, Timeouts
from .providers.lmstudio import LMStudioInference
from .providers.ollama import OllamaInference
from .report import LMSTUDIO, OLLAMA, Reporter
from .routing.build import make_strategy
from .routing.canary import CanaryStrategy
from .routing.strategies import Strategy
from .state.breaker import BreakerPolicy, BreakerState
from .state.health import HealthMonitor
from .state.history import History
from .state.registry import ProviderRegistry
from .state.standby import WarmStandby
from .types import ChatResult, Embeddings, Message
from .walk import embeddings
from .walk.reply import ReplyStream
from .walk.walker import ChainWalker, WalkPolicy

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
        chain = resolve_chain(llm, list(built))
        if not chain:
            raise ConfigError(
                f"No usable provider: llm.provider = {llm.provider!r} is not available "
                f"(configured: {sorted(built)})"
            )
        self.primary = chain[0]
        self.registry = ProviderRegistry(
            {n: built[n] for n in chain}, self._clock, BreakerPolicy.from_config(llm),
            on_breaker=self._on_breaker, on_change=self._update_active,
            on_idle=lambda name: self.monitor.idle(name), caps=provider_caps(llm),
        )
        self._unused = [p for n, p in built.items() if n not in self.registry]
        for name in self.chain:
            built[name].state_listener = functools.partial(self._provider_changed, name)
        tail = last_resort(self.chain)
        weights = provider_weights(llm)
        tags = {p.name: list(p.tags) for p in llm.providers}
        self._routing_rows = {n: {"weight": weights.get(n, 1.0), "tags": tags.get(n, []),
                                  "last_resort": n in tail, "source": "config",
                                  "engine": None} for n in self.chain}
        self.strategy = strategy or make_strategy(
            llm.routing, weights, self.logger,
            providers=len(self.chain) - len(tail), tags=tags,
        )
        self.history = History(self._clock)
        self.reporter = Reporter(self.registry, self.logger, self.history)
        self.monitor = HealthMonitor(
            self.registry, self._clock, interval=lambda: self._health_check_interval,
            logger=self.logger, passive=llm.passive_health,
        )
        self.walker = ChainWalker(
            self.registry, self.strategy, self.monitor, self.reporter,
            WalkPolicy.from_config(llm), forced=lambda: self._forced,
            on_change=self._update_active, last_resort=tail,
        )
        self.tokens = self.walker.tokens
        self.discovery = self._discovery(providers is not None, tail)
        warm = llm.warm_standby
        self.standby = WarmStandby(
            self.registry, self.walker.ranking, self._clock,
            interval=warm.interval, keep_for=warm.keep_for, logger=self.logger,
        ) if warm.enabled else None
        self._forced: str | None = None
        self._active: str = self.primary
        self._startup: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    def _discovery(self, injected: bool, tail: frozenset[str]) -> DiscoveredProviders | None:
        """The keeper of discovered providers, or None: ``llm.discover`` is off, providers
        were handed in (tests), ``llm.order`` names the chain exactly, or fallback is off."""
        llm = self.config.llm
        if not llm.discover or injected or llm.order or not llm.enable_fallback:
            return None
        timeouts = Timeouts.from_config(llm)
        return DiscoveredProviders(
            self.registry, self.monitor, self._clock, self.logger,
            ports=llm.discover_ports, timeout=llm.health_check_timeout,
            interval=lambda: self._health_check_interval,
            build=lambda entry: build_entry(entry, timeouts),
            before=next(iter(tail), None), joined=self._joined, left=self._left,
            pinned=lambda: self._forced,
        )

    def _joined(self, name: str, found: Found) -> None:
        """A discovered provider is in the chain: route to it, show it as discovered."""
        self._routing_rows[name] = {"weight": 1.0, "tags": [], "last_resort": False,
                                    "source": "discovered", "engine": found.engine.display}
        self.registry[name].provider.state_listener = functools.partial(
            self._provider_changed, name)
        if self.registry.initial_check_done:
            self._update_active("health")

    def _left(self, name: str) -> None:
        self._routing_rows.pop(name, None)
        self._update_active("health")

    # -- the guide's names -------------------------------------------------------------
    @property
    def ollama(self) -> Provider | None:
        return self.registry[OLLAMA].provider if OLLAMA in self.registry else None

    @property
    def lmstudio(self) -> Provider | None:
        return self.registry[LMSTUDIO].provider if LMSTUDIO in self.registry else None

    @property
    def providers(self) -> dict[str, Provider]:
        """The providers in the chain, in failover order."""
        return {n: self.registry[n].provider for n in self.registry}

    @property
    def chain(self) -> list[str]:
        """The failover order now: the configured chain, with discovered providers after
        the configured ones and before the embedded model."""
        return list(self.registry)

    @property
    def active_provider(self) -> str:
        """Where new requests go first: the pinned provider while forced, else the first
        usable one in the routing strategy's order (what the strategy actually does)."""
        return self._forced or self._active

    def display(self, name: str) -> str:
        return self.registry.display(name)

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
        """Check every provider once, log the provider in use, start background checks.

        Callers arriving while the start-up checks run wait for the same checks; DEMI counts
        as started only once they are done.
        """
        if self._started:
            return
        if self._closed:
            raise Closed("UnifiedLLMInference is closed")
        if self._startup is None:
            self._startup = asyncio.get_running_loop().create_task(
                self._start_once(), name="demi-llm-start")
        # Shielded: one caller giving up (cancelled) must not cancel the others' start-up.
        await asyncio.shield(self._startup)

    async def _start_once(self) -> None:
        for st in self.registry.states():
            await st.provider.start()
        found: list[str] = []
        async with asyncio.TaskGroup() as group:  # discovery beside the first checks
            group.create_task(self.monitor.check_all(max_age=0))
            if self.discovery is not None:
                found_task = group.create_task(self.discovery.startup())
        if self.discovery is not None:
            found = found_task.result()
            await asyncio.gather(*(self.monitor.check(n, max_age=0) for n in found))
        self.registry.initial_check_done = True
        self._active, preferred = self.walker.preview()
        self.reporter.started(self._active, preferred)
        self.monitor.start()
        if self.discovery is not None:
            self.discovery.start()
        if self.standby is not None:
            self.standby.start()
        self._started = True

    async def close(self) -> None:
        """Stop background checks and close every provider's sessions (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._startup)  # a start-up still checking providers
        if self.standby is not None:
            await self.standby.stop()
        if self.discovery is not None:
            await self.discovery.stop()
        await self.monitor.stop()
        for provider in [*(st.provider for st in self.registry.states()), *self._unused]:
            await provider.close()

    # -- manual selection --------------------------------------------------------------
    def force_provider(self, name: str | None) -> None:
        """Pin every request to ``name`` (no fallback), or ``None`` for automatic selection."""
        if name is not None and name not in self.registry:
            raise UnknownProviderError(name, list(self.registry))
        if name == self._forced:
            return
        self._forced = name
        self.reporter.forced(name, self._active)

    @property
    def forced_provider(self) -> str | None:
        return self._forced

    # -- health and status -------------------------------------------------------------
    async def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Per-provider state: healthy, circuit, last check time, last error, latency.

        Results come from the cache unless older than the check interval (or ``refresh``).
        """
        await self.monitor.check_all(max_age=0 if refresh else None)
        return {name: self.provider_status(name) for name in self.registry}

    async def wait_loading(self, timeout: float) -> None:  # noqa: ASYNC109 (public API)
        """Give providers that are still loading a model up to ``timeout`` s, then re-check them.

        For one-shot reports (``status``): a model that is seconds from ready should be
        reported as ready, not as "loading".
        """
        loading = [n for n in self.registry if (r := self.registry[n].report) and r.loading]
        await asyncio.gather(*(self.registry[n].provider.wait_ready(timeout) for n in loading))
        await asyncio.gather(*(self.monitor.check(n, max_age=0) for n in loading))

    def provider_status(self, name: str) -> dict[str, Any]:
        row = self.reporter.provider_status(name, self.active_provider)
        origin = self._routing_rows[name]
        row.update(source=origin["source"], engine=origin["engine"])
        return row

    def status_report(self) -> dict[str, Any]:
        """Providers, routing, recent history and counters (the LLM's part of ``/status``)."""
        report = self.reporter.status(
            active=self.active_provider, forced=self._forced, primary=self.primary,
            strategy=self.strategy.name,
        )
        for name, row in report["providers"].items():
            row.update(self._routing_rows[name])
        report.update(self.strategy.describe())
        hedges = self.walker.hedges
        report["hedge"] = {"enabled": hedges.policy.enabled, "requests": hedges.requests,
                           "hedged": hedges.hedged, "hedge_wins": hedges.hedge_wins}
        queue = self.walker.queue
        report["queue"] = {"waiting": queue.waiting, "max_waiting": queue.max_waiting,
                           "max_wait": queue.max_wait, "refused": queue.refused}
        report["warm_standby"] = None if self.standby is None else {
            "standby": self.standby.standby(), "warmed": dict(self.standby.warmed)}
        return report

    @property
    def canary(self) -> CanaryStrategy | None:
        """The canary strategy in force (through a sticky wrapper), or None."""
        strategy = getattr(self.strategy, "inner", self.strategy)
        return strategy if isinstance(strategy, CanaryStrategy) else None

    def watch_switches(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event)`` each time the provider new requests go to changes, as it
        happens (the events of ``/status``'s ``switches``: ``from``, ``to``, ``reason``,
        ``kind``, ``why``, ``time``); returns the function that stops it. For views that
        tell people what the layer does, such as the terminal chat."""
        return self.history.watch_switches(callback)

    def hedge_counts(self) -> tuple[int, int]:
        """(requests that hedged, hedges the second provider won), for metrics."""
        return self.walker.hedges.hedged, self.walker.hedges.hedge_wins

    def _provider_changed(self, name: str) -> None:
        """A provider's own state moved (its engine died or is ready): re-check it now."""
        if self.registry.initial_check_done and not self._closed:
            self.monitor.probe(name)

    def _on_breaker(self, name: str, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.history.record_breaker(name, old.value, new.value, reason)
        self.monitor.wake()

    def _update_active(self, cause: str) -> None:
        new, preferred = self.walker.preview()
        old = self._active
        if new != old:
            self._active = new
            self.reporter.switched(old, new, preferred, cause)

    # -- chat --------------------------------------------------------------------------
    async def chat(self, messages: Sequence[Message], **options: Any) -> str:
        """The reply text (the guide's ``await llm.chat(messages)``)."""
        return (await self.chat_detailed(messages, **options)).text

    async def chat_detailed(self, messages: Sequence[Message], **options: Any) -> ChatResult:
        """The reply with provider, model, fallback flag, token counts and latency.

        A whole reply always comes from one provider: no mid-stream continuation here.
        """
        reply = await self.open_stream(messages, continuable=False, **options)
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

    def estimate_tokens(self, messages: Sequence[Message], tools: Sequence[Any] = ()) -> int:
        """The prompt's size in tokens as DEMI estimates it when fitting a conversation:
        characters, corrected by what the provider new requests go to first has reported
        for its model (:class:`~src.llm.tokens.TokenEstimator`). Tools count as their JSON
        text. RequestError for messages the chat would refuse too."""
        msgs = validate_messages(messages)
        if tools:
            msgs.append({"role": "system", "content": json.dumps(list(tools))})
        provider = self.registry[self.active_provider].provider
        return self.tokens.estimate(msgs, f"{provider.name}:{provider.model}")

    async def embed(self, texts: str | Sequence[str]) -> Embeddings:
        """One vector per text, from the first provider in the order that has an embedding
        model (``llm.<provider>.embedding_model``); RequestError 404 if none has one."""
        if self._closed:
            raise Closed("UnifiedLLMInference is closed")
        if not self._started:
            await self.start()
        return await embeddings.embed(self.walker, embeddings.check_texts(texts))

    async def open_stream(
        self, messages: Sequence[Message], *, continuable: bool = True, **options: Any
    ) -> ReplyStream:
        """Walk the provider order until one starts answering; return its reply stream.

        With ``llm.mid_stream: continue`` and ``continuable`` (the default: a streaming
        caller), a reply that breaks after text is continued by the next provider in the
        same stream; pass ``continuable=False`` when the caller needs one provider's whole
        answer.

        Raises RequestError for the caller's own mistakes (no failover), AllProvidersFailed
        when every provider failed before producing text, Closed after :meth:`close`.
        """
        if self._closed:
            raise Closed("UnifiedLLMInference is closed")
        if not self._started:
            await self.start()
        return await self.walker.open(validate_messages(messages), parse_options(options),
                                      continuable=continuable)
