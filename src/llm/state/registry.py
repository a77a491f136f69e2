"""The registry of provider state, with one owner: health results, breaker and stats.

Everything DEMI tracks about a provider changes here and only here: the health monitor
hands in probe results (:meth:`ProviderRegistry.record_report`), the chain walk hands in the
outcome of requests (:meth:`record_failure`, :meth:`record_success`,
:meth:`record_rejection`). What a result means
for traffic is decided here too: a failed start-up check opens the circuit at once (the
provider was never seen up), a later one counts like a failed request, a provider still
loading its model counts as neither.

Membership is fixed for configured providers; discovered ones (``src/llm/discovery``) join
with :meth:`ProviderRegistry.add` and leave with :meth:`ProviderRegistry.remove`, never
while serving. A result arriving for a provider that has left is dropped.

The registry calls back only through the two callables it is given (``on_breaker`` for a
breaker that moved, ``on_change`` after a health result); it never calls the monitor,
the chain walk or the facade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ..clock import Clock
from ..errors import ProviderError
from ..providers.base import Provider
from ..types import HealthReport
from .breaker import BreakerPolicy, CircuitBreaker, Listener
from .stats import ProviderStats
from .traffic import TrafficSeries


@dataclass(slots=True, eq=False)
class ProviderState:
    """Everything DEMI tracks about one provider."""

    provider: Provider
    breaker: CircuitBreaker
    traffic: TrafficSeries
    stats: ProviderStats = field(default_factory=ProviderStats)
    report: HealthReport | None = None
    checked_at: float | None = None
    checked_wall: float | None = None
    last_error: str | None = None
    last_rejection: str | None = None
    """Why the server last refused a request (shown in ``/status``; never a health matter)."""
    serving: int = 0
    """Requests this provider is answering right now (from the request to the close)."""
    max_concurrency: int | None = None
    """The configured cap on ``serving`` (``max_concurrency``); None = learn it from the
    server where it says (:attr:`Provider.reported_concurrency`), else no cap."""
    spillovers: int = 0
    """Requests that would have come here first but went elsewhere: it was at its cap."""

    @property
    def cap(self) -> int | None:
        """The most requests DEMI sends here at once (None: no cap)."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return self.provider.reported_concurrency

    @property
    def load(self) -> float:
        """In flight over the cap (in flight alone without one): 0 idle, 1 full."""
        cap = self.cap
        return self.serving / cap if cap else float(self.serving)

    @property
    def has_slot(self) -> bool:
        cap = self.cap
        return cap is None or self.serving < cap
    succeeded_at: float | None = None
    """When a reply from this provider last finished well: passive evidence of health."""

    @property
    def usable(self) -> bool:
        """Traffic may go here now: breaker closed and not known to be still loading."""
        loading = self.report is not None and self.report.loading
        return self.breaker.allows_traffic and not loading


class ProviderRegistry:
    """The providers of the chain, in failover order, each with its :class:`ProviderState`."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        clock: Clock,
        policy: BreakerPolicy,
        *,
        on_breaker: Listener,
        on_change: Callable[[str], None],
        on_idle: Callable[[str], None] = lambda _name: None,
        caps: Mapping[str, int | None] | None = None,
    ) -> None:
        self._clock = clock
        self._policy = policy
        self._listener = on_breaker
        self._on_change = on_change
        self._on_idle = on_idle
        self.on_release: Callable[[str], None] = lambda _name: None
        """Called whenever a request in flight ends (the slot queue wakes a waiter)."""
        self._states = {
            name: ProviderState(
                provider, CircuitBreaker(name, clock, policy, listener=on_breaker),
                TrafficSeries(clock),
            )
            for name, provider in providers.items()
        }
        for name, cap in (caps or {}).items():
            if name in self._states:
                self._states[name].max_concurrency = cap
        self.initial_check_done = False
        """False until the start-up check of every provider finished."""

    # -- reading -----------------------------------------------------------------------
    def __getitem__(self, name: str) -> ProviderState:
        return self._states[name]

    def __contains__(self, name: object) -> bool:
        return name in self._states

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def states(self) -> Iterator[ProviderState]:
        return iter(self._states.values())

    def usable(self) -> frozenset[str]:
        return frozenset(n for n, st in self._states.items() if st.usable)

    def display(self, name: str) -> str:
        st = self._states.get(name)
        return st.provider.display_name if st else name

    # -- membership (discovered providers come and go; configured ones stay) ---------------
    def add(self, name: str, provider: Provider, *, before: str | None = None) -> None:
        """A provider joins the chain, ahead of ``before`` (else at the end); the breaker
        starts closed, its first health probe decides (:meth:`record_report`)."""
        if name in self._states:
            raise ValueError(f"provider {name!r} is already in the chain")
        state = ProviderState(
            provider, CircuitBreaker(name, self._clock, self._policy, listener=self._listener),
            TrafficSeries(self._clock),
        )
        order = list(self._states.items())
        at = next((i for i, (n, _) in enumerate(order) if n == before), len(order))
        order.insert(at, (name, state))
        self._states = dict(order)

    def remove(self, name: str) -> Provider:
        """A provider leaves the chain (not while it serves a request); its provider object
        is returned for the caller to close. Results still arriving for it are dropped."""
        st = self._states[name]
        if st.serving:
            raise ValueError(f"provider {name!r} is serving {st.serving} request(s)")
        del self._states[name]
        return st.provider

    # -- health results ----------------------------------------------------------------
    def record_report(self, name: str, report: HealthReport) -> None:
        """A health probe finished: keep the result and let it move the breaker."""
        st = self._states.get(name)
        if st is None:
            return  # left the chain while the probe ran
        st.report = report
        st.checked_at = self._clock.now()
        st.checked_wall = self._clock.wall()
        st.stats.record_probe(report.latency)
        if report.healthy:
            st.breaker.record_success()
        else:
            st.last_error = report.error
            if not report.loading:
                reason = report.error or "health check failed"
                if self.initial_check_done:
                    st.breaker.record_failure(reason)
                else:
                    st.breaker.force_open(reason)  # never seen up: do not send it traffic first
        if self.initial_check_done:
            self._on_change("health")

    def checked_without_result(self, name: str) -> None:
        """A probe could not produce a result (a DEMI bug): look again after the interval."""
        if (st := self._states.get(name)) is not None:
            st.checked_at = self._clock.now()

    # -- requests in flight ------------------------------------------------------------
    def serve(self, name: str) -> Callable[[], None]:
        """Count a request going to ``name``; the returned callable (idempotent) ends it.

        While a provider serves, its own traffic is the evidence of its health: the health
        monitor skips its probe until it is idle again (:meth:`HealthMonitor.due_at`).
        """
        st = self._states[name]
        st.serving += 1
        done = False

        def release() -> None:
            nonlocal done
            if done:
                return
            done = True
            st.serving -= 1
            self.on_release(name)
            if st.serving == 0:
                self._on_idle(name)

        return release

    # -- request outcomes --------------------------------------------------------------
    def record_failure(self, name: str, exc: ProviderError) -> None:
        """A request failed at this provider (loading does not count against it)."""
        st = self._states.get(name)
        if st is None:
            return
        st.last_error = exc.reason
        if exc.counts_against_health:
            st.stats.record_failure()
            st.traffic.record(ok=False)
            st.breaker.record_failure(exc.reason, hold=getattr(exc, "retry_after", None))

    def record_rejection(self, name: str, exc: ProviderError) -> None:
        """The server refused this request (4xx): counted as such, against nothing else."""
        st = self._states.get(name)
        if st is None:
            return
        st.stats.rejections += 1
        st.last_rejection = exc.reason

    def record_success(
        self, name: str, latency: float, ttft: float | None, prompt_tokens: int | None,
        completion_tokens: int | None, fallback: bool,
    ) -> bool:
        """A reply finished; True if that moved the breaker (the active provider may change)."""
        st = self._states.get(name)
        if st is None:
            return False
        st.succeeded_at = self._clock.now()
        before = st.breaker.state
        st.breaker.record_success()
        st.stats.record_success(latency, ttft, prompt_tokens, completion_tokens, fallback)
        st.traffic.record(ok=True, ttft=ttft)
        return st.breaker.state is not before
