"""Which model names the conductor answers to, and how it lists them.

Clients name a model in every request. DEMI answers to its aliases (``demi`` by default)
and to the model each provider in the chain is configured with; every one of those names
routes through the whole failover chain, and each provider then uses its *own* configured
model (an Ollama model name means nothing to LM Studio). Any other name is a 404, so a
typo is reported instead of silently served by whatever model happens to be up.

Ollama treats ``name`` and ``name:latest`` as the same model, so both spellings match.
The set and the list bodies are computed once, when the app is built.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence

from ..llm import Provider

OWNER = "demi"


def _ollama_variants(name: str) -> tuple[str, ...]:
    """``name`` plus its other Ollama spelling (with or without ``:latest``)."""
    if name.endswith(":latest"):
        return name, name[: -len(":latest")]
    if ":" not in name.rsplit("/", 1)[-1]:
        return name, f"{name}:latest"
    return (name,)


def configured_models(providers: Iterable[Provider]) -> list[str]:
    """The model each provider is configured with (not one it merely discovered)."""
    names: list[str] = []
    for provider in providers:
        # LM Studio and OpenAI-compatible providers fill ``model`` in from the server when
        # none is configured; only a configured name is a stable name to route by.
        model = getattr(provider, "configured_model", provider.model)
        if isinstance(model, str) and model and model not in names:
            names.append(model)
    return names


class ModelCatalog:
    """The routable names, and the ``/v1/models`` (OpenAI's and Anthropic's) and
    ``/api/tags`` bodies."""

    def __init__(self, aliases: Sequence[str], models: Sequence[str], created: float | None = None):
        ordered: list[str] = []
        for name in [*aliases, *models]:
            if name and name not in ordered:
                ordered.append(name)
        self.names: tuple[str, ...] = tuple(ordered)
        self._known = frozenset(v for name in ordered for v in _ollama_variants(name))
        created_at = int(created if created is not None else time.time())
        self.openai_list = json.dumps(
            {"object": "list", "data": [
                {"id": n, "object": "model", "created": created_at, "owned_by": OWNER}
                for n in ordered
            ]},
            separators=(",", ":"),
        ).encode()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_at))
        self.ollama_tags = json.dumps(
            {"models": [_tag_entry(n, stamp) for n in ordered]}, separators=(",", ":")
        ).encode()
        self.created_stamp = stamp
        self.anthropic_list = json.dumps(
            {"data": [anthropic_model(n, stamp) for n in ordered], "has_more": False,
             "first_id": ordered[0] if ordered else None,
             "last_id": ordered[-1] if ordered else None},
            separators=(",", ":"),
        ).encode()

    def __contains__(self, name: object) -> bool:
        return name in self._known


def anthropic_model(name: str, created_at: str) -> dict[str, object]:
    """One model in the shape of Anthropic's ``GET /v1/models``."""
    return {"type": "model", "id": name, "display_name": name, "created_at": created_at}


def _tag_entry(name: str, modified_at: str) -> dict[str, object]:
    """One ``/api/tags`` entry in Ollama's shape (DEMI names are routes, not files: size 0)."""
    family = "demi"
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at,
        "size": 0,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "",
            "quantization_level": "",
        },
    }
