"""Sticky conversations: the next turn of a conversation goes where its last turn went.

A server that just answered a conversation holds its prompt in its KV cache; sending the
next turn elsewhere makes that server re-read the whole conversation (seconds on a CPU).
So a request whose leading messages are exactly an earlier request of the last
``ttl`` seconds goes to the provider that answered that one, while it is usable.

* The match is on a hash of the conversation prefix: a rolling SHA-256 over the messages,
  one digest per prefix length, so one request costs one pass over its messages. Only
  a strictly shorter prefix matches (a repeated identical request is not a next turn).
* The table is bounded in size (least recently used forgotten first) and in age.
* Providers that are a last resort (the embedded model) never attract a conversation:
  one that fell back to them returns to the rotation once the servers are back.

:class:`StickyStrategy` wraps any strategy: a hit puts the remembered provider first and
the wrapped strategy's ranking behind it (without advancing a rotation); a miss
is the wrapped strategy's own order.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .strategy import Outcome, RouteContext, Strategy


def prefix_digests(messages: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """The digest of every prefix: element i covers messages[0..i]."""
    digest = hashlib.sha256()
    out = []
    for message in messages:
        digest.update(json.dumps(message, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
        out.append(digest.copy().digest())
    return out


class StickyTable:
    """Conversation prefix digest → provider, bounded in size and age."""

    def __init__(self, size: int, ttl: float, now: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._now = now
        self._table: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """The provider of the longest remembered earlier turn of this conversation."""
        now = self._now()
        for digest in reversed(prefix_digests(messages)[:-1]):
            entry = self._table.get(digest)
            if entry is None:
                continue
            provider, expires = entry
            if expires < now:
                del self._table[digest]
                continue
            self._table.move_to_end(digest)
            return provider
        return None

    def remember(self, messages: Sequence[Mapping[str, Any]], provider: str) -> None:
        if not messages:
            return
        digest = prefix_digests(messages)[-1]
        self._table[digest] = (provider, self._now() + self.ttl)
        self._table.move_to_end(digest)
        while len(self._table) > self.size:
            self._table.popitem(last=False)



class StickyStrategy(Strategy):
    """Any strategy, with conversations kept on the provider that served their last turn."""

    def __init__(self, inner: Strategy, table: StickyTable) -> None:
        self.inner = inner
        self.table = table
        self.name = inner.name
        self.lookups = 0
        """Requests that could continue a conversation (more than one message)."""
        self.hits = 0
        """Of those, the ones sent back to the provider of their conversation."""

    def choose(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        if len(ctx.messages) < 2:
            return self.inner.choose(chain, ctx)
        self.lookups += 1
        target = self.table.lookup(ctx.messages)
        if target is None or target not in ctx.available or target in ctx.last_resort:
            return self.inner.choose(chain, ctx)
        self.hits += 1
        return [target, *(n for n in self.inner.rank(chain, ctx) if n != target)]

    def rank(self, chain: Sequence[str], ctx: RouteContext) -> list[str]:
        return self.inner.rank(chain, ctx)

    def observe(self, outcome: Outcome) -> None:
        self.inner.observe(outcome)
        if outcome.ok:
            self.table.remember(outcome.messages, outcome.provider)

    def describe(self) -> dict[str, Any]:
        table = self.table
        return {**self.inner.describe(), "sticky": {
            "lookups": self.lookups, "hits": self.hits,
            "hit_rate": round(self.hits / self.lookups, 4) if self.lookups else None,
            "entries": len(table), "size": table.size, "ttl_s": table.ttl,
        }}
