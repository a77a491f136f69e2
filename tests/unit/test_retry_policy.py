"""RetryPolicy: which failures earn another round, backoff with jitter, Retry-After, deadline."""

from __future__ import annotations

from src.core.config import RetryConfig
from src.llm.errors import (
    ModelNotFound,
    ProviderBusy,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
)
from src.llm.walk.retry import RetryPolicy

DOWN = ProviderUnavailable("ollama", "Connection refused")


def _policy(rand: float = 1.0, **kw: float) -> RetryPolicy:
    base = {"attempts": 2, "backoff": 0.5, "backoff_max": 4, "deadline": 30, **kw}
    return RetryPolicy(RetryConfig.model_validate(base), rand=lambda: rand)


def test_backoff_doubles_with_jitter_and_stops_after_attempts() -> None:
    """Round 0 waits 0.25-0.5 s, round 1 0.5-1 s; no third round with attempts=2."""
    assert _policy(rand=1.0).wait(0, [DOWN], 0) == 0.5
    assert _policy(rand=0.0).wait(0, [DOWN], 0) == 0.25
    assert _policy(rand=1.0).wait(1, [DOWN], 0) == 1.0
    assert _policy().wait(2, [DOWN], 0) is None


def test_only_failures_that_pass_by_themselves_are_retried() -> None:
    """Busy, unreachable and 5xx retry; a missing model, a timeout or a 4xx-ish reply do not."""
    busy = ProviderBusy("lmstudio", "busy (503)", status=503)
    five = ProviderResponseError("ollama", "HTTP 500", status=500)
    assert _policy().wait(0, [DOWN, busy, five], 0) is not None
    assert _policy().wait(0, [DOWN, ModelNotFound("ollama", "not found")], 0) is None
    assert _policy().wait(0, [ProviderTimeout("ollama", "no first token")], 0) is None
    assert _policy().wait(0, [ProviderResponseError("ollama", "malformed")], 0) is None
    assert _policy().wait(0, [], 0) is None


def test_retry_after_is_honoured_when_every_provider_asked_for_time() -> None:
    """Both busy with Retry-After 3 and 7: wait the shorter, 3 s (longer than the backoff)."""
    a = ProviderBusy("ollama", "busy (429)", status=429, retry_after=3)
    b = ProviderBusy("lmstudio", "busy (429)", status=429, retry_after=7)
    assert _policy().wait(0, [a, b], 0) == 3
    assert _policy().wait(0, [a, DOWN], 0) == 0.5  # the other may be back any moment


def test_deadline_bounds_the_wait() -> None:
    """A round that would start after the request's deadline is not started."""
    assert _policy(deadline=10).wait(0, [DOWN], 9.4) == 0.5
    assert _policy(deadline=10).wait(0, [DOWN], 9.6) is None
    slow = ProviderBusy("ollama", "busy", status=503, retry_after=60)
    assert _policy(deadline=10).wait(0, [slow], 0) is None
