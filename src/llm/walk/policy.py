"""The config values the chain walk reads, built once from the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.config import HedgeConfig, LLMConfig, RetryConfig


@dataclass(frozen=True, slots=True)
class WalkPolicy:
    """The config values the walk reads, built once."""

    max_tokens: int
    health_check_wait: float
    load_wait: float
    fallback_enabled: bool
    mid_stream: str
    hedge: HedgeConfig
    retry: RetryConfig

    @classmethod
    def from_config(cls, llm: LLMConfig) -> WalkPolicy:
        return cls(max_tokens=llm.max_tokens, health_check_wait=llm.health_check_wait,
                   load_wait=llm.embedded.load_wait, fallback_enabled=llm.enable_fallback,
                   mid_stream=llm.mid_stream, hedge=llm.hedge, retry=llm.retry)
