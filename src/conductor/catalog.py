"""Which model names the conductor answers to, and how it lists them.

Clients name a model in every request. DEMI answers to its aliases (``demi`` by default)
and to the model each provider in the chain is configured with; every one of those names
routes through the whole failover chain, and each provider then uses its *own* configured
model (an Ollama model name means nothing to LM Studio). Any other name is a 404, so a
typo is reported instead of silently served by whatever model happens to be up.

The configured embedding models (``embedding_model``) are listed too, with the
``embedding`` capability in ``/api/show``, so clients that pick an embedding model from
the list (llm-ollama reads ``/api/tags`` and ``/api/show``) find them; a chat naming one
of them is Ollama's 400 "does not support chat".

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


def configured_embedding_models(providers: Iterable[Provider]) -> list[str]:
    """The embedding model each provider is configured with, in chain order."""
    names: list[str] = []
    for provider in providers:
        model = provider.embedding_model
        if isinstance(model, str) and model and model not in names:
            names.append(model)
    return names


CHAT_CAPABILITIES = ("completion", "tools")
EMBEDDING_CAPABILITIES = ("embedding",)


class ModelCatalog:
    """The routable names, and the ``/v1/models`` (OpenAI's and Anthropic's) and
    ``/api/tags`` bodies."""

    def __init__(self, aliases: Sequence[str], models: Sequence[str], created: float | None = None,
                 embedding_models: Sequence[str] = ()):
        chat: list[str] = []
        for name in [*aliases, *models]:
            if name and name not in chat:
                chat.append(name)
        self.names: tuple[str, ...] = tuple(chat)
        """The names a chat routes by."""
        chat_known = {v for name in chat for v in _ollama_variants(name)}
        self.embedding_names: tuple[str, ...] = tuple(
            n for n in embedding_models if n and n not in chat_known)
        """Embedding models that are not also chat names."""
        self._chat = frozenset(chat_known)
        self._embedding = frozenset(
            v for name in self.embedding_names for v in _ollama_variants(name))
        self._known = self._chat | self._embedding
        ordered = [*chat, *self.embedding_names]
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

    def embedding_only(self, name: str) -> bool:
        """Whether ``name`` is an embedding model and no chat name."""
        return name in self._embedding

    def capabilities(self, name: str) -> tuple[str, ...]:
        """What ``/api/show`` says the model can do."""
        return EMBEDDING_CAPABILITIES if self.embedding_only(name) else CHAT_CAPABILITIES


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
