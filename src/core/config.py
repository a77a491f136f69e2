"""Configuration: parsed once at start-up into typed, frozen objects.

Layers, later wins: ``defaults.yaml`` beside this file → a user YAML file (``DEMI_CONFIG``
or ``--config``) → ``.env`` in the working directory → environment variables →
command-line overrides. ``os.environ`` is never modified.

Every error names the key, the bad value, where it came from and what is accepted, and is
raised as :class:`~src.core.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, Field, ValidationError, field_validator

from .errors import ConfigError
from .routing_config import (
    STRICT,
    CanaryConfig,
    HedgeConfig,
    RetryConfig,
    RoutingConfig,
    Seconds,
    WarmStandbyConfig,
)

__all__ = ["CanaryConfig", "DemiConfig", "HedgeConfig", "RetryConfig", "RoutingConfig",
           "WarmStandbyConfig", "load_config"]  # the routing models are re-exported

DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")

ENV_VARS: dict[str, str] = {
    "OLLAMA_BASE_URL": "llm.ollama.base_url",
    "OLLAMA_MODEL": "llm.ollama.model",
    "LMSTUDIO_BASE_URL": "llm.lmstudio.base_url",
    "LMSTUDIO_MODEL": "llm.lmstudio.model",
    "OLLAMA_EMBEDDING_MODEL": "llm.ollama.embedding_model",
    "LMSTUDIO_EMBEDDING_MODEL": "llm.lmstudio.embedding_model",
    "DEMI_ENABLE_LLM_FALLBACK": "llm.enable_fallback",
    "DEMI_LLM_PROVIDER": "llm.provider",
    "DEMI_HEALTH_CHECK_INTERVAL": "llm.health_check_interval",
    "DEMI_ROUTING_STRATEGY": "llm.routing.strategy",
    "DEMI_EMBEDDED_ENABLED": "llm.embedded.enabled",
    "DEMI_EMBEDDED_MODEL_PATH": "llm.embedded.model_path",
    "DEMI_HOST": "conductor.host",
    "DEMI_PORT": "conductor.port",
    "DEMI_API_KEY": "conductor.api_key",
    "DEMI_LOG_LEVEL": "logging.level",
}
"""Environment variable → config key. An empty value counts as unset."""

_STRICT = STRICT


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

    model_config = _STRICT
    base_url: str
    timeout: Seconds = Field(gt=0)
    temperature: float = Field(ge=0, le=2)
    context_window: int = Field(ge=256)
    region: str | None

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


OpenAICompatConfig = ProviderEntry
"""The name this model had while every entry was OpenAI-compatible."""


class EmbeddedConfig(BaseModel):
    model_config = _STRICT
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


class LLMConfig(BaseModel):
    model_config = _STRICT
    provider: str
    enable_fallback: bool
    ollama: OllamaConfig
    lmstudio: LMStudioConfig
    health_check_interval: Seconds = Field(gt=0)
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
    order: tuple[str, ...]
    routing: RoutingConfig
    embedded: EmbeddedConfig
    providers: tuple[ProviderEntry, ...]

    def provider_names(self) -> tuple[str, ...]:
        """Every provider name that is configured (whether or not it is in the chain)."""
        names = ["ollama", "lmstudio", *(p.name for p in self.providers)]
        if self.embedded.enabled:
            names.append("embedded")
        return tuple(names)


class ConductorConfig(BaseModel):
    model_config = _STRICT
    host: str
    port: int = Field(ge=0, le=65535)
    model_aliases: tuple[str, ...]
    max_body_bytes: int = Field(ge=1024)
    shutdown_grace: Seconds = Field(ge=0)
    api_key: str | None = Field(min_length=1, repr=False)
    cors_origins: tuple[str, ...]
    max_header_bytes: int = Field(ge=1024, le=1048576)
    header_timeout: Seconds = Field(gt=0)


class LoggingConfig(BaseModel):
    model_config = _STRICT
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    format: str

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class DemiConfig(BaseModel):
    """The whole configuration, as ``defaults.yaml`` lays it out.

    Defaults live in one place, ``defaults.yaml``: these models declare only types and
    bounds (every key is required), so a default missing from the YAML fails at start-up
    instead of silently taking a second value from code. The one exception: the entries
    of ``llm.providers`` (see :class:`ProviderEntry`).
    """

    model_config = _STRICT
    llm: LLMConfig
    conductor: ConductorConfig
    logging: LoggingConfig

    @classmethod
    def defaults(cls) -> DemiConfig:
        """The built-in configuration, ``defaults.yaml`` alone."""
        return cls.from_mapping({})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "config") -> DemiConfig:
        """Validate a dict shaped like ``defaults.yaml``, laid over the defaults."""
        merged = deep_merge(_read_yaml(DEFAULTS_PATH), data)
        return _validate(merged, {}, source)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested mappings; values in ``top`` win, lists and scalars are replaced whole."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level")
    return data


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def _env_value(key: str, raw: str) -> Any:
    """Interpret an environment string; ``null``/``none`` clear optional model keys."""
    if key.endswith((".model", "_model")) and raw.strip().lower() in ("null", "none"):
        return None
    return raw.strip()


def load_config(
    config_path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] | None = ".env",
) -> DemiConfig:
    """Build the configuration from every layer; raise ConfigError naming any bad key.

    ``overrides`` maps dotted keys (``"conductor.port"``) to values, for command-line flags.
    ``environ`` defaults to ``os.environ``; tests pass their own.
    """
    env = dict(os.environ if environ is None else environ)
    data = _read_yaml(DEFAULTS_PATH)
    sources: dict[str, str] = {}

    path = config_path or env.get("DEMI_CONFIG") or None
    if path:
        data = deep_merge(data, _read_yaml(Path(path)))

    layered: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        for name, value in dotenv_values(dotenv_path).items():
            if value is not None:
                layered[name] = value
                if name in ENV_VARS:
                    sources[ENV_VARS[name]] = f"{name} in {dotenv_path}"
    for name in ENV_VARS:
        if name in env:
            layered[name] = env[name]
            sources[ENV_VARS[name]] = f"environment variable {name}"
    for name, key in ENV_VARS.items():
        raw = layered.get(name)
        if raw is None or raw.strip() == "":
            sources.pop(key, None)
            continue
        _set_path(data, key, _env_value(key, raw))

    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key, value)
            sources[key] = "command line"

    return _validate(data, sources, str(path) if path else "defaults.yaml")


def _validate(data: dict[str, Any], sources: Mapping[str, str], file_source: str) -> DemiConfig:
    try:
        config = DemiConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources, file_source)) from None
    _check_names(config)
    return config


def _describe(exc: ValidationError, sources: Mapping[str, str], file_source: str) -> str:
    lines = ["Invalid configuration:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # Drop pydantic's internal union/type tags so the key reads as the user wrote it.
        key = ".".join(p for p in loc if not p.startswith(("function-", "literal[")))
        origin = sources.get(key, file_source)
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (from {origin}); remove it or check its spelling")
            continue
        if err["type"] == "missing":
            lines.append(f"  {key}: missing (from {origin}); every key needs a value, see "
                         "defaults.yaml")
            continue
        accepted = err["msg"]
        ctx = err.get("ctx") or {}
        if "expected" in ctx:
            accepted = f"expected one of {ctx['expected']}"
        lines.append(f"  {key} = {err['input']!r} (from {origin}): {accepted}")
    return "\n".join(lines)


def _check_names(config: DemiConfig) -> None:
    """Cross-field checks pydantic cannot express per field: provider names must exist."""
    llm = config.llm
    extra = [p.name for p in llm.providers]
    builtin = {"ollama", "lmstudio", "embedded"}
    clash = sorted(set(extra) & builtin)
    if clash or len(set(extra)) != len(extra):
        raise ConfigError(
            f"Invalid configuration:\n  llm.providers: names must be unique and not "
            f"ollama/lmstudio/embedded (got {extra})"
        )
    known = {"ollama", "lmstudio", "embedded", *extra}
    named = [("llm.provider", llm.provider)]
    named += [("llm.order", n) for n in llm.order]
    if llm.routing.canary_provider:
        named.append(("llm.routing.canary_provider", llm.routing.canary_provider))
    if llm.routing.canary.provider:
        named.append(("llm.routing.canary.provider", llm.routing.canary.provider))
    named += [("llm.routing.weights", n) for n in llm.routing.weights]
    tags = {t for p in llm.providers for t in p.tags}
    for workload, names in llm.routing.affinity.items():
        for n in names:
            if n.startswith("tag:") and n[4:] not in tags:
                raise ConfigError(
                    f"Invalid configuration:\n  llm.routing.affinity.{workload} = {n!r}: no "
                    f"provider in llm.providers has that tag; tags: {sorted(tags)}"
                )
        named += [(f"llm.routing.affinity.{workload}", n) for n in names
                  if not n.startswith("tag:")]
    for key, name in named:
        if name not in known:
            raise ConfigError(
                f"Invalid configuration:\n  {key} = {name!r}: not a provider; "
                f"expected one of {sorted(known)}"
            )
    for entry in llm.providers:
        if entry.kind == "ollama" and not entry.model:
            raise ConfigError(
                f"Invalid configuration:\n  llm.providers[{entry.name}].model: missing; a "
                f"kind: ollama provider needs the model to run (e.g. llama3.2:1b)"
            )
    if llm.provider == "embedded" and not llm.embedded.enabled:
        raise ConfigError(
            "Invalid configuration:\n  llm.provider = 'embedded' but llm.embedded.enabled "
            "is false; enable it or choose ollama/lmstudio"
        )
