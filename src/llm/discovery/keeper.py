"""``DiscoveredProviders``: the engines DEMI found by itself, in the chain for as long as they
answer.

* At start-up (:meth:`startup`, run beside the configured providers' first checks, so it
  adds nothing to the wait for the first answer) the ports are scanned once and every
  usable engine joins the chain after the configured providers, before the embedded model.
* Every ``health_check_interval`` (:meth:`start`) the ports no provider holds are scanned
  again for engines started later, and a discovered provider that has not been usable for a
  whole interval leaves the chain: one INFO line, no outage to report, since the user never
  configured it. If it comes back, the next scan finds it again.
* Each engine found is one INFO line with the YAML that keeps it for good; an engine DEMI
  cannot use as it is (Jan without its API key, an Ollama with no model) is one INFO line
  saying what to add, and is not added.

Ports already used by a configured provider on loopback are never probed, and nothing but
loopback is ever probed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from ...core.config import ProviderEntry
from ...core.tasks import cancel_and_wait, keep_running
from ..clock import Clock
from ..providers.base import Provider
from ..state.health import HealthMonitor
from ..state.registry import ProviderRegistry
from .engines import DEFAULT_PORTS
from .entries import config_yaml, provider_entry, provider_name
from .identify import Found
from .scan import scan

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"})


def loopback_port(url: str | None) -> int | None:
    """The port of a loopback URL (http default 80), or None for any other host."""
    if not url:
        return None
    parts = urlsplit(url)
    if (parts.hostname or "") not in LOOPBACK_HOSTS:
        return None
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


class DiscoveredProviders:
    """Adds the engines it finds to the registry and removes them when they go away."""

    def __init__(
        self,
        registry: ProviderRegistry,
        monitor: HealthMonitor,
        clock: Clock,
        logger: logging.Logger,
        *,
        ports: Sequence[int],
        timeout: float,
        interval: Callable[[], float],
        build: Callable[[ProviderEntry], Provider],
        before: str | None,
        joined: Callable[[str, Found], None],
        left: Callable[[str], None],
        pinned: Callable[[], str | None],
    ) -> None:
        self._registry = registry
        self._monitor = monitor
        self._clock = clock
        self._log = logger
        self.ports = tuple(ports) or DEFAULT_PORTS
        self._timeout = timeout
        self._interval = interval
        self._build = build
        self._before = before
        self._joined = joined
        self._left = left
        self._pinned = pinned
        self.members: dict[str, Found] = {}
        """The discovered providers in the chain now, by provider name."""
        self.seen: list[Found] = []
        """What the last scan found (usable or not), for ``status``."""
        self._down_since: dict[str, float] = {}
        self._told: set[tuple[int, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._passes = 0

    # -- scanning ----------------------------------------------------------------------
    def _held_ports(self) -> set[int]:
        """Loopback ports a provider in the chain already talks to: never probed."""
        held = {loopback_port(st.provider.base_url) for st in self._registry.states()}
        return {p for p in held if p is not None}

    async def scan(self) -> list[Found]:
        """The engines answering on the ports no provider holds (nothing is added)."""
        return await scan(self.ports, timeout=self._timeout, skip=self._held_ports())

    async def startup(self) -> list[str]:
        """Scan once and add what answers; the names added (their first check is the
        caller's, with the configured providers')."""
        found = await self.scan()
        self.seen = found
        return [name for f in found if (name := await self._adopt(f)) is not None]

    async def _adopt(self, found: Found) -> str | None:
        """Add ``found`` to the chain if DEMI can use it as it is; its name, or None."""
        key = (found.port, found.engine.key)
        name = provider_name(found, set(self._registry))
        if not found.usable:
            if key not in self._told:
                self._told.add(key)
                why = ("it needs an API key" if found.needs_key
                       else "it has no model to serve yet")
                self._log.info("Found %s on %s, but %s, so DEMI does not use it; to use it, "
                               "add to your config: %s", found.engine.display, found.base_url,
                               why, config_yaml(found, name))
            return None
        provider = self._build(provider_entry(found, name))
        await provider.start()
        self._registry.add(name, provider, before=self._before)
        self.members[name] = found
        self._told.discard(key)
        self._joined(name, found)
        chain = list(self._registry)
        after = chain[chain.index(name) - 1] if chain.index(name) else None
        self._log.info(
            "Found %s on %s serving %s; it answers %s (discovered, not configured). To keep "
            "it, add to your config: %s", found.engine.display, found.base_url,
            found.models[0] if found.models else "its loaded model",
            f"after {self._registry.display(after)}" if after else "first",
            config_yaml(found, name))
        return name

    # -- the background pass -----------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                keep_running(self._step, self._log, "engine discovery",
                             sleep=self._clock.sleep),
                name="demi-discovery",
            )

    async def _step(self) -> float:
        """Drop the discovered providers gone for an interval, add the engines new since
        the last pass; the seconds until the next pass."""
        interval = self._interval()
        self._passes += 1
        if self._passes == 1:
            return interval  # start-up has just scanned
        now = self._clock.now()
        for name in list(self.members):
            st = self._registry[name]
            if st.usable or st.serving or self._pinned() == name:
                self._down_since.pop(name, None)
                continue
            since = self._down_since.setdefault(name, now)
            if now - since >= interval:
                await self._drop(name)
        found = await self.scan()
        self.seen = [*(self.members.values()), *found]
        for f in found:
            added = await self._adopt(f)
            if added is not None:
                self._monitor.probe(added)
        return interval

    async def _drop(self, name: str) -> None:
        found = self.members.pop(name)
        self._down_since.pop(name, None)
        await self._monitor.forget(name)
        provider = self._registry.remove(name)
        self._left(name)
        self._log.info("%s on %s has stopped answering; DEMI no longer uses it (it was "
                       "discovered, not configured)", found.engine.display, found.base_url)
        await provider.close()

    async def stop(self) -> None:
        """Stop the background pass and wait for it (the providers are the chain's to close)."""
        task, self._task = self._task, None
        died = await cancel_and_wait(task)
        if died is not None:
            self._log.error("Engine discovery had died of %s (a DEMI bug)",
                            type(died).__name__, exc_info=died)
