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
from typing import Any

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .schema import (
    STRICT,
    CanaryConfig,
    ConductorConfig,
    EmbeddedConfig,
    HedgeConfig,
    LLMConfig,
    LMStudioConfig,
    LoggingConfig,
    OllamaConfig,
    ProviderEntry,
    RetryConfig,
    RoutingConfig,
    WarmStandbyConfig,
)

__all__ = [  # the section models are re-exported: callers import configuration from here
    "CanaryConfig", "ConductorConfig", "DemiConfig", "EmbeddedConfig", "HedgeConfig",
    "LLMConfig", "LMStudioConfig", "LoggingConfig", "OllamaConfig", "ProviderEntry",
    "RetryConfig", "RoutingConfig", "WarmStandbyConfig", "load_config",
]

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
    "DEMI_DISCOVER": "llm.discover",
    "DEMI_DISCOVER_PORTS": "llm.discover_ports",
    "DEMI_HOST": "conductor.host",
    "DEMI_PORT": "conductor.port",
    "DEMI_API_KEY": "conductor.api_key",
    "DEMI_LOG_LEVEL": "logging.level",
}
"""Environment variable → config key. An empty value counts as unset."""



class DemiConfig(BaseModel):
    """The whole configuration, as ``defaults.yaml`` lays it out (sections in ``schema.py``)."""

    model_config = STRICT
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
