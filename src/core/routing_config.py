"""The routing part of the configuration: strategies, canary, sticky, hedging, retries,
warm standby.

Kept apart from :mod:`src.core.config` (which re-exports every name) so each module stays
small; the rule is the same: types and bounds here, every default in ``defaults.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer

Seconds = float
STRICT = ConfigDict(frozen=True, extra="forbid")
"""Every config model: frozen, and an unknown key is an error (a typo cannot do nothing)."""


def _frozen_affinity(value: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(dict(value))


def _frozen_weights(value: Mapping[str, float]) -> Mapping[str, float]:
    if any(w <= 0 for w in value.values()):
        raise ValueError("weights must be greater than 0")
    return MappingProxyType(dict(value))


class CanaryConfig(BaseModel):
    """``llm.routing.canary``: a share of traffic that rolls back by itself on a regression."""

    model_config = STRICT
    provider: str | None
    percent: float = Field(ge=0, le=100)
    window: int = Field(ge=2)
    max_error_rate: float = Field(ge=0, le=1)
    max_ttft_ratio: float = Field(gt=0)
    ttft_floor: Seconds = Field(ge=0)


class RoutingConfig(BaseModel):
    model_config = STRICT
    strategy: Literal["failover", "round_robin", "nearest", "quality", "canary", "affinity"]
    region: str | None
    canary_provider: str | None
    """Deprecated spelling of ``canary.provider`` (used when ``canary.provider`` is null)."""
    canary_percent: float = Field(ge=0, le=100)
    """Deprecated spelling of ``canary.percent`` (used with ``canary_provider``)."""
    canary: CanaryConfig
    sticky: bool | None
    """Sticky conversations; null = on when the chain has more than one provider."""
    sticky_size: int = Field(ge=1)
    sticky_ttl: Seconds = Field(gt=0)
    weights: Annotated[Mapping[str, float], AfterValidator(_frozen_weights)]
    """Round-robin weights of ollama / lmstudio / embedded (entries carry ``weight``)."""
    affinity: Annotated[Mapping[str, tuple[str, ...]], AfterValidator(_frozen_affinity)]
    """Read-only (a ``MappingProxyType``): the config is frozen all the way down."""

    @property
    def canary_target(self) -> tuple[str | None, float]:
        """(canary provider, percent): ``canary`` first, else the deprecated flat keys."""
        if self.canary.provider is not None:
            return self.canary.provider, self.canary.percent
        return self.canary_provider, self.canary_percent

    @field_serializer("affinity")
    def _plain_affinity(self, value: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
        return {k: list(v) for k, v in value.items()}

    @field_serializer("weights")
    def _plain_weights(self, value: Mapping[str, float]) -> dict[str, float]:
        return dict(value)


class HedgeConfig(BaseModel):
    model_config = STRICT
    enabled: bool
    delay_factor: float = Field(gt=0)
    min_delay: Seconds = Field(gt=0)
    max_percent: float = Field(ge=0, le=100)
    embedded: bool


class RetryConfig(BaseModel):
    model_config = STRICT
    attempts: int = Field(ge=0, le=10)
    backoff: Seconds = Field(gt=0)
    backoff_max: Seconds = Field(gt=0)
    deadline: Seconds = Field(gt=0)


class WarmStandbyConfig(BaseModel):
    model_config = STRICT
    enabled: bool
    interval: Seconds = Field(gt=0)
    keep_for: Seconds = Field(gt=0)
