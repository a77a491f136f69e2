"""Recent traffic per provider in fixed time buckets, for the status page's small charts.

The moving averages in ``stats.py`` answer "how is this provider now"; people looking at
the status page also ask "since when": this keeps, per provider, the requests, errors and
first-token times of the last ``buckets`` × ``bucket_s`` seconds (five minutes by
default), in a ring of buckets so memory stays flat. Nothing in routing reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clock import Clock

BUCKET_S = 10.0
BUCKETS = 30


@dataclass(slots=True)
class _Bucket:
    start: int = -1
    requests: int = 0
    errors: int = 0
    ttft_sum: float = 0.0
    ttft_n: int = 0


class TrafficSeries:
    """One provider's recent requests, errors and TTFT, bucketed by time."""

    def __init__(self, clock: Clock, bucket_s: float = BUCKET_S, buckets: int = BUCKETS) -> None:
        self._clock = clock
        self.bucket_s = bucket_s
        self._ring = [_Bucket() for _ in range(buckets)]

    def _bucket(self, index: int) -> _Bucket:
        bucket = self._ring[index % len(self._ring)]
        if bucket.start != index:
            bucket.start, bucket.requests, bucket.errors = index, 0, 0
            bucket.ttft_sum, bucket.ttft_n = 0.0, 0
        return bucket

    def _now_index(self) -> int:
        return int(self._clock.now() // self.bucket_s)

    def record(self, ok: bool, ttft: float | None = None) -> None:
        bucket = self._bucket(self._now_index())
        bucket.requests += 1
        bucket.errors += not ok
        if ttft is not None:
            bucket.ttft_sum += ttft
            bucket.ttft_n += 1

    def as_dict(self) -> dict[str, Any]:
        """Oldest bucket first, the current (partial) one last. ``now`` (wall time) and
        ``age_s`` (how far into the current bucket ``now`` is) place the buckets on a clock,
        so a timeline can draw events (``/status`` switches carry wall times) among them."""
        now = self._now_index()
        rows = [self._ring[i % len(self._ring)] for i in range(now - len(self._ring) + 1, now + 1)]
        live = [b if b.start == now - len(self._ring) + 1 + k else None
                for k, b in enumerate(rows)]
        return {
            "bucket_s": self.bucket_s,
            "now": self._clock.wall(),
            "age_s": round(self._clock.now() - now * self.bucket_s, 3),
            "requests": [b.requests if b else 0 for b in live],
            "errors": [b.errors if b else 0 for b in live],
            "ttft_ms": [round(1000 * b.ttft_sum / b.ttft_n, 2) if b and b.ttft_n else None
                        for b in live],
        }
