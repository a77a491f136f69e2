"""Per-provider performance figures, kept in process.

They feed three things: the quality and nearest routing strategies (which order providers
by what they measured), ``/status`` and ``/metrics`` in the conductor, and the closing
question a user asks when DEMI feels slow: which provider is slow, and since when.
Moving averages (EWMA) make old behaviour fade without keeping a window of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

TOKENS_PER_S_HALF = 20.0
"""Generation speed that scores half of the speed term (a small local model's pace)."""


def _ewma(old: float | None, sample: float, alpha: float) -> float:
    return sample if old is None else old + alpha * (sample - old)


@dataclass(slots=True)
class ProviderStats:
    """Counters and moving averages for one provider."""

    requests: int = 0
    successes: int = 0
    failures: int = 0
    rejections: int = 0
    """Requests the server refused (400/422): its answer, not a failure."""
    served_as_fallback: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ewma: float | None = None
    ttft_ewma: float | None = None
    probe_latency_ewma: float | None = None
    tokens_per_s_ewma: float | None = None
    success_ewma: float = 1.0
    alpha: float = 0.2

    def record_success(
        self, latency: float, ttft: float | None, prompt_tokens: int | None,
        completion_tokens: int | None, fallback: bool,
    ) -> None:
        self.requests += 1
        self.successes += 1
        self.served_as_fallback += fallback
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0
        self.latency_ewma = _ewma(self.latency_ewma, latency, self.alpha)
        if ttft is not None:
            self.ttft_ewma = _ewma(self.ttft_ewma, ttft, self.alpha)
            generating = latency - ttft
            if completion_tokens and generating > 0:
                self.tokens_per_s_ewma = _ewma(
                    self.tokens_per_s_ewma, completion_tokens / generating, self.alpha
                )
        self.success_ewma = _ewma(self.success_ewma, 1.0, self.alpha)

    def record_failure(self) -> None:
        self.requests += 1
        self.failures += 1
        self.success_ewma = _ewma(self.success_ewma, 0.0, self.alpha)

    def record_probe(self, latency: float) -> None:
        self.probe_latency_ewma = _ewma(self.probe_latency_ewma, latency, self.alpha)

    @property
    def expected_latency(self) -> float | None:
        """Best guess of how quickly this provider starts answering (seconds)."""
        if self.ttft_ewma is not None:
            return self.ttft_ewma
        return self.probe_latency_ewma

    @property
    def measured(self) -> bool:
        """True once a real request finished here (probes alone do not count)."""
        return self.requests > 0

    def quality_score(self) -> float:
        """Higher is better: reliability first, then speed. In (0, 1].

        Only real requests count: success, time to first token and tokens per second, each
        an EWMA. A provider that fails half its requests scores below any reliable one
        however fast it is; between reliable ones, a sooner first token and a faster
        generation win. A speed not measured yet counts as middling (0.5), not as best.
        """
        ttft = 0.5 if self.ttft_ewma is None else 1.0 / (1.0 + self.ttft_ewma)
        tps = 0.5 if self.tokens_per_s_ewma is None else (
            self.tokens_per_s_ewma / (self.tokens_per_s_ewma + TOKENS_PER_S_HALF)
        )
        return (self.success_ewma ** 2) * (0.5 + 0.25 * ttft + 0.25 * tps)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "rejections": self.rejections,
            "served_as_fallback": self.served_as_fallback,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_ewma_s": self.latency_ewma,
            "ttft_ewma_s": self.ttft_ewma,
            "probe_latency_ewma_s": self.probe_latency_ewma,
            "tokens_per_s_ewma": self.tokens_per_s_ewma,
            "success_ewma": round(self.success_ewma, 4),
            "quality_score": round(self.quality_score(), 4),
        }
