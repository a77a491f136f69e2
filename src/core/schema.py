"""What each configuration key is: the typed, frozen models ``defaults.yaml`` is read into.

Types and bounds only: every default lives in ``defaults.yaml`` (every key here is
required, so a default missing from the YAML fails at start-up instead of silently taking
a second value from code). The one exception: the entries of ``llm.providers``
(:class:`ProviderEntry`). How the layers are read and errors worded is ``config.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer, field_validator

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
    strategy: Literal["failover", "round_robin", "nearest", "quality", "canary", "affinity",
                      "least_busy"]
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


def _check_url(value: str | None) -> str | None:
    """Accept only absolute http(s) URLs; drop a trailing slash so paths join cleanly."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute URL with a scheme, e.g. http://localhost:11434")
    return value.rstrip("/")


class _Server(BaseModel):
    """Fields every server-backed provider has."""

    model_config = STRICT
    base_url: str
    timeout: Seconds = Field(gt=0)
    temperature: float = Field(ge=0, le=2)
    context_window: int = Field(ge=256)
    region: str | None
    max_concurrency: int | None = Field(ge=1)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str | None:
        return _check_url(v)


class OllamaConfig(_Server):
    model: str = Field(min_length=1)
    keep_alive: str | float | None
    embedding_model: str | None = Field(min_length=1)


class LMStudioConfig(_Server):
    model: str | None
    api_key: str
    embedding_model: str | None = Field(min_length=1)


class ProviderEntry(_Server):
    """One entry of ``llm.providers``: an extra Ollama or OpenAI-compatible server.

    The one exception to "defaults live in ``defaults.yaml``": a YAML list cannot carry
    defaults for its entries, so an entry's optional keys default here (the values the
    commented example in ``defaults.yaml`` shows). ``kind: ollama`` entries are full Ollama
    providers (``num_ctx``, ``keep_alive``); ``kind: openai`` speaks ``/v1/chat/completions``.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["ollama", "openai"] = "openai"
    model: str | None = None
    embedding_model: str | None = Field(None, min_length=1)
    api_key: str = "none"
    timeout: Seconds = Field(30, gt=0)
    temperature: float = Field(0.7, ge=0, le=2)
    context_window: int = Field(8192, ge=256)
    keep_alive: str | float | None = None
    region: str | None = None
    weight: float = Field(1.0, gt=0)
    tags: tuple[str, ...] = ()
    max_concurrency: int | None = Field(None, ge=1)


class EmbeddedConfig(BaseModel):
    model_config = STRICT
    enabled: bool
    model_path: str | None
    cache_dir: str | None
    context_window: int = Field(ge=256)
    threads: int = Field(ge=1, le=64)
    max_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0, le=2)
    queue_size: int = Field(ge=1)
    load_wait: Seconds = Field(ge=0)
    restart_backoff: Seconds = Field(gt=0)
    restart_backoff_max: Seconds = Field(gt=0)
    stable_after: Seconds = Field(ge=0)
    start_timeout: Seconds = Field(gt=0)
    region: str | None
    max_concurrency: int | None = Field(ge=1)
    spillover: bool


class QueueConfig(BaseModel):
    model_config = STRICT
    max_wait: Seconds = Field(gt=0)
    max_waiting: int = Field(ge=0)


class LLMConfig(BaseModel):
    model_config = STRICT
    provider: str
    enable_fallback: bool
    ollama: OllamaConfig
    lmstudio: LMStudioConfig
    health_check_interval: Seconds = Field(gt=0)
    passive_health: bool
    health_check_timeout: Seconds = Field(gt=0)
    health_check_wait: Seconds = Field(ge=0)
    probe_interval: Seconds = Field(gt=0)
    probe_backoff_max: Seconds = Field(gt=0)
    recovery_successes: int = Field(ge=1)
    failure_threshold: int = Field(ge=1)
    connect_timeout: Seconds = Field(gt=0)
    read_idle_timeout: Seconds = Field(gt=0)
    max_tokens: int = Field(ge=1)
    mid_stream: Literal["continue", "error"]
    hedge: HedgeConfig
    warm_standby: WarmStandbyConfig
    retry: RetryConfig
    queue: QueueConfig
    order: tuple[str, ...]
    routing: RoutingConfig
    embedded: EmbeddedConfig
    providers: tuple[ProviderEntry, ...]
    discover: bool
    """Probe loopback default ports for engines already running (``src/llm/discovery``)."""
    discover_ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...]
    """The ports discovery probes, in order; empty = each known engine's default port."""

    @field_validator("discover_ports", mode="before")
    @classmethod
    def _port_list(cls, v: object) -> object:
        """``DEMI_DISCOVER_PORTS=8080,8000`` arrives as one string: split it."""
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    def provider_names(self) -> tuple[str, ...]:
        """Every provider name that is configured (whether or not it is in the chain)."""
        names = ["ollama", "lmstudio", *(p.name for p in self.providers)]
        if self.embedded.enabled:
            names.append("embedded")
        return tuple(names)


class ResponsesConfig(BaseModel):
    """``conductor.responses``: the bounded store behind ``previous_response_id``."""

    model_config = STRICT
    store_path: str | None = Field(min_length=1)
    """A SQLite file (``~`` expanded); null keeps stored responses in memory only."""
    max_items: int = Field(ge=1)
    max_age: Seconds = Field(gt=0)


class ConductorConfig(BaseModel):
    model_config = STRICT
    host: str
    port: int = Field(ge=0, le=65535)
    model_aliases: tuple[str, ...]
    max_body_bytes: int = Field(ge=1024)
    shutdown_grace: Seconds = Field(ge=0)
    api_key: str | None = Field(min_length=1, repr=False)
    cors_origins: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    max_header_bytes: int = Field(ge=1024, le=1048576)
    header_timeout: Seconds = Field(gt=0)
    responses: ResponsesConfig


class LoggingConfig(BaseModel):
    model_config = STRICT
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    format: str

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v
