"""Small pure pieces of the conductor: model names, failure reason labels, URLs."""

from __future__ import annotations

import json

import pytest

from src.conductor.catalog import ModelCatalog
from src.conductor.http.metrics import reason_class
from src.conductor.http.server import _public_url, example_curl
from src.llm.errors import (
    ModelNotFound,
    ProviderBusy,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
)


def test_catalog_matches_both_ollama_spellings() -> None:
    """'name' and 'name:latest' are one model; tagged names match only exactly."""
    catalog = ModelCatalog(["demi"], ["llama3.2:1b", "qwen:latest"])
    assert "demi" in catalog and "demi:latest" in catalog
    assert "qwen" in catalog and "qwen:latest" in catalog
    assert "llama3.2:1b" in catalog
    assert "llama3.2" not in catalog and "gpt-4o" not in catalog


def test_catalog_lists_each_name_once_in_order() -> None:
    """Duplicates collapse; aliases come first."""
    catalog = ModelCatalog(["demi", "demi"], ["m1", "demi", "m2"])
    assert catalog.names == ("demi", "m1", "m2")
    assert [m["id"] for m in json.loads(catalog.openai_list)["data"]] == ["demi", "m1", "m2"]
    assert [m["name"] for m in json.loads(catalog.ollama_tags)["models"]] == ["demi", "m1", "m2"]


@pytest.mark.parametrize(("error", "label"), [
    (ProviderUnavailable("ollama", "Connection refused"), "unavailable"),
    (ProviderTimeout("ollama", "no first token within 3s"), "timeout"),
    (ProviderBusy("ollama", "busy (503): x"), "busy"),
    (ModelNotFound("ollama", "model 'x' not found"), "model_not_found"),
    (ProviderResponseError("ollama", "HTTP 500: crashed"), "bad_response"),
    (ProviderError("ollama", "the reply ended before any text"), "error"),
])
def test_failure_reasons_map_to_a_small_label_set(error: ProviderError, label: str) -> None:
    """Typed failures become bounded metric labels (never by their wording)."""
    assert reason_class(error) == label


def test_wildcard_bind_is_shown_as_loopback() -> None:
    """A 0.0.0.0 bind prints a URL a user can actually open."""
    assert _public_url("0.0.0.0", 8420) == "http://127.0.0.1:8420"
    assert _public_url("::1", 9) == "http://[::1]:9"
    assert "http://127.0.0.1:8420/v1/chat/completions" in example_curl("http://127.0.0.1:8420")
