"""Percentiles and the small value types the figures are built from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([5.0], 99)
    5.0
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the load generator saw it (seconds; ``ttft`` only for streams)."""

    ok: bool
    latency: float
    ttft: float | None = None
    provider: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Dist:
    """p50/p99/max of a set of durations, in milliseconds."""

    p50: float
    p99: float
    max: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Dist:
        ms = [s * 1000.0 for s in seconds]
        return cls(percentile(ms, 50), percentile(ms, 99), max(ms, default=math.nan), len(ms))


def latencies(samples: Sequence[Sample]) -> list[float]:
    """Latencies of the successful samples."""
    return [s.latency for s in samples if s.ok]


def ttfts(samples: Sequence[Sample]) -> list[float]:
    """Time to first token of the successful streamed samples."""
    return [s.ttft for s in samples if s.ok and s.ttft is not None]


def errors(samples: Sequence[Sample]) -> list[str]:
    """Error texts of the failed samples."""
    return [s.error or "error" for s in samples if not s.ok]
