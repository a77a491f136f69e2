"""The one mapping of foreign errors into DEMI's tree, shared by the network providers."""

from __future__ import annotations

import json

import aiohttp
import pytest

from src.llm.errors import (
    ModelNotFound,
    ProviderBusy,
    ProviderRejected,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
)
from src.llm.providers._errors import map_foreign, map_status


@pytest.mark.parametrize(("exc", "kind"), [
    (TimeoutError(), ProviderTimeout),
    (ConnectionRefusedError(111, "Connection refused"), ProviderUnavailable),
    (aiohttp.ServerDisconnectedError(), ProviderResponseError),
    (aiohttp.ClientPayloadError("cut"), ProviderResponseError),
    (json.JSONDecodeError("bad", "x", 0), ProviderResponseError),
])
def test_foreign_errors_map_to_demi_errors(exc: BaseException, kind: type) -> None:
    """Network and parsing errors become the provider errors failover understands."""
    assert isinstance(map_foreign("ollama", "Ollama", exc, "timed out"), kind)


@pytest.mark.parametrize("exc", [TypeError("bug"), KeyError("k"), AttributeError("a")])
def test_demi_bugs_are_not_mapped(exc: BaseException) -> None:
    """An exception outside the foreign list is DEMI's own bug: raised again, not mapped."""
    with pytest.raises(type(exc)):
        map_foreign("ollama", "Ollama", exc, "timed out")


@pytest.mark.parametrize(("status", "kind"), [
    (400, ProviderRejected), (422, ProviderRejected), (401, ProviderUnavailable),
    (403, ProviderUnavailable),
    (404, ModelNotFound), (429, ProviderBusy), (503, ProviderBusy),
    (500, ProviderResponseError),
])
def test_statuses_map_the_same_for_every_provider_kind(status: int, kind: type) -> None:
    """One status table for Ollama and OpenAI-compatible servers alike."""
    err = map_status("x", "X", status, b'{"error": "nope"}', {"Retry-After": "7"},
                     not_found="model 'm' not found")
    assert isinstance(err, kind)
    if isinstance(err, ProviderBusy):
        assert err.retry_after == 7.0
