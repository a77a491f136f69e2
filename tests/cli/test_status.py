"""``status``: the provider table, its exit code, and its JSON form."""

from __future__ import annotations

import json

from src.testing.fakes.launcher import FakeServer
from tests.cli.helpers import Demi, table_rows
from tests.fakes.fixtures import FakeServerFactory


def test_both_up_shows_both_reachable_and_ollama_active(demi: Demi) -> None:
    """With both fakes up the table says reachable, model present, and Ollama is active."""
    result = demi("status")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {"ollama", "lmstudio"}
    assert rows["ollama"]["REACHABLE"] == rows["lmstudio"]["REACHABLE"] == "yes"
    assert rows["ollama"]["PRESENT"] == rows["lmstudio"]["PRESENT"] == "yes"
    assert rows["ollama"]["MODEL"] == "llama3.2:1b"
    assert rows["ollama"]["ACTIVE"] == "*" and rows["lmstudio"]["ACTIVE"] == ""
    assert rows["ollama"]["URL"] == demi.env["OLLAMA_BASE_URL"]


def test_ollama_killed_still_usable_through_lmstudio(
    demi: Demi, fake_server_factory: FakeServerFactory
) -> None:
    """A dead Ollama shows as unreachable with its reason; LM Studio is active; exit 0."""
    ollama = fake_server_factory("ollama")
    ollama.kill()
    result = demi("status", env={"OLLAMA_BASE_URL": ollama.url})
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows["ollama"]["REACHABLE"] == "no"
    assert rows["ollama"]["CIRCUIT"] == "open"
    assert rows["lmstudio"]["REACHABLE"] == "yes"
    assert rows["lmstudio"]["ACTIVE"] == "*"
    assert "ollama: " in result.stdout  # the reason line under the table


def test_both_killed_exits_1(demi: Demi, fake_server_factory: FakeServerFactory) -> None:
    """With nothing reachable the table still prints, with a hint, and the exit code is 1."""
    ollama, lmstudio = fake_server_factory("ollama"), fake_server_factory("lmstudio")
    ollama.kill()
    lmstudio.kill()
    result = demi("status", env={"OLLAMA_BASE_URL": ollama.url, "LMSTUDIO_BASE_URL": lmstudio.url})
    assert result.returncode == 1
    rows = table_rows(result.stdout)
    assert rows["ollama"]["REACHABLE"] == rows["lmstudio"]["REACHABLE"] == "no"
    assert "No provider is usable" in result.stdout
    assert "Traceback" not in result.stderr


def test_json_output(demi: Demi, fake_lmstudio: FakeServer) -> None:
    """--json prints one object: overall usability, the active provider and each provider."""
    result = demi("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["usable"] is True
    assert data["active"] == "ollama"
    assert data["pinned"] is None
    by_name = {p["name"]: p for p in data["providers"]}
    assert list(by_name) == ["ollama", "lmstudio"]
    assert by_name["lmstudio"]["healthy"] is True
    assert by_name["lmstudio"]["base_url"] == fake_lmstudio.url
    assert by_name["ollama"]["model_present"] is True


def test_json_reports_unusable(demi: Demi, fake_server_factory: FakeServerFactory) -> None:
    """--json with nothing reachable says usable=false and still exits 1."""
    ollama = fake_server_factory("ollama")
    ollama.kill()
    result = demi("status", "--json", "--no-fallback", env={"OLLAMA_BASE_URL": ollama.url})
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["usable"] is False
    assert [p["name"] for p in data["providers"]] == ["ollama"]


def test_provider_flag_changes_the_primary(demi: Demi) -> None:
    """status --provider lmstudio checks the chain with LM Studio first and active."""
    result = demi("status", "--provider", "lmstudio")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert list(rows) == ["lmstudio", "ollama"]
    assert rows["lmstudio"]["ACTIVE"] == "*"
