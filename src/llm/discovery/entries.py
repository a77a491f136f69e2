"""From an engine found to a provider entry: its name, its ``llm.providers`` entry, and the
one-line YAML a user pastes into a config file to keep it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import yaml

from ...core.config import ProviderEntry
from .identify import Found


def provider_name(found: Found, taken: Collection[str]) -> str:
    """``llamacpp`` on the engine's own port, ``llamacpp-8081`` elsewhere (and always for a
    second Ollama, since ``ollama`` is the guide's), never a name already in use."""
    key = found.engine.key
    name = key if found.port == found.engine.port and key not in taken else f"{key}-{found.port}"
    suffix = 2
    unique = name
    while unique in taken:
        unique = f"{name}-{suffix}"
        suffix += 1
    return unique


def entry_fields(found: Found, name: str) -> dict[str, Any]:
    """The ``llm.providers`` entry for ``found``, with only the keys that matter."""
    fields: dict[str, Any] = {"name": name, "kind": found.engine.kind,
                              "base_url": found.base_url}
    if found.models:
        fields["model"] = found.models[0]
    if found.needs_key:
        fields["api_key"] = "YOUR-API-KEY"
    return fields


def provider_entry(found: Found, name: str) -> ProviderEntry:
    """The validated entry DEMI builds the provider from (the same a config file gives)."""
    return ProviderEntry.model_validate(entry_fields(found, name))


def config_yaml(found: Found, name: str) -> str:
    """One line of YAML that keeps ``found`` in the chain when laid over a config file:
    ``llm: {providers: [{name: llamacpp, kind: openai, base_url: ..., model: ...}]}``.

    (Lists replace lists when configs are layered: a file with ``providers`` already
    gets this entry added to its list.)
    """
    entry = yaml.safe_dump(entry_fields(found, name), default_flow_style=True,
                           sort_keys=False, width=1 << 16).strip()
    return f"llm: {{providers: [{entry}]}}"
