"""When a request whose every provider failed is worth another round, and after how long.

The walk already tries every provider once before any is asked again, so "another provider
before the same one again" is the walk's order; this policy decides whether a second round
follows. Only failures that can pass by themselves qualify: busy (429/503), unreachable
(a server restarting), and a server's own 5xx. A missing model, the caller's bad request or a
first-token timeout (which already cost the whole timeout) end the request at once.

The wait is exponential backoff with jitter (so clients that failed together do not come back
together), never shorter than a busy server's ``Retry-After`` (a server that asked for time
gets it), and the round happens only if it fits in the request's deadline
(``llm.retry.deadline`` seconds from the start of the request).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ...core.config import RetryConfig
from ..errors import ProviderBusy, ProviderError, ProviderResponseError, ProviderUnavailable


def passes_by_itself(error: ProviderError) -> bool:
    """Whether asking the same provider again a little later can succeed."""
    if isinstance(error, (ProviderBusy, ProviderUnavailable)):
        return True
    return isinstance(error, ProviderResponseError) and (error.status or 0) >= 500


class RetryPolicy:
    """Backoff with jitter, Retry-After honoured, bounded by the request's deadline."""

    def __init__(self, config: RetryConfig, rand: Callable[[], float] = random.random) -> None:
        self.rounds = config.attempts
        self.deadline = config.deadline
        self._backoff = config.backoff
        self._backoff_max = config.backoff_max
        self._rand = rand

    def wait(self, round_no: int, errors: Sequence[ProviderError], elapsed: float) -> float | None:
        """Seconds to wait before round ``round_no + 1`` (0-based), or None: give up."""
        if round_no >= self.rounds or not errors:
            return None
        if not all(passes_by_itself(e) for e in errors):
            return None
        base = min(self._backoff_max, self._backoff * 2 ** round_no)
        delay = base * (0.5 + 0.5 * self._rand())  # jitter: between half and all of it
        asked = [e.retry_after for e in errors if isinstance(e, ProviderBusy) and e.retry_after]
        if len(asked) == len(errors):  # every provider asked for time: give the shortest
            delay = max(delay, min(asked))
        if elapsed + delay > self.deadline:
            return None
        return delay
