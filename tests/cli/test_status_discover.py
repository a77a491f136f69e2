"""``status`` asking a running conductor, and ``status --discover`` listing the engines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from src.core.config import DemiConfig
from src.testing.fakes.launcher import FakeServer
from tests.cli.helpers import Demi, table_rows
from tests.e2e.helpers import ConductorProcess


@pytest.fixture
def conductor(tmp_path: Path, fake_ollama: FakeServer,
              fake_lmstudio: FakeServer) -> Iterator[ConductorProcess]:
    workdir = tmp_path / "conductor"
    workdir.mkdir()
    proc = ConductorProcess(workdir, fake_ollama.url, fake_lmstudio.url)
    try:
        yield proc.start()
    finally:
        proc.stop()


def test_status_asks_the_conductor_already_running(
    demi: Demi, conductor: ConductorProcess, fake_ollama: FakeServer,
) -> None:
    """With a conductor on the configured port, status shows that conductor's chain and
    starts no chain (no health check of its own reaches the servers)."""
    fake_ollama.control(mode="status", status=503, routes="all")  # from now on, for both
    fake_ollama.clear_requests()
    result = demi("status", env={"DEMI_PORT": str(conductor.port)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"(as seen by the DEMI conductor on {conductor.url})")
    rows = table_rows(result.stdout)
    # The conductor checked Ollama healthy at its start; this status did not ask again.
    assert rows["ollama"]["REACHABLE"] == "yes" and rows["ollama"]["ACTIVE"] == "*"
    assert fake_ollama.requests() == []


def test_status_json_from_the_conductor_names_it(
    demi: Demi, conductor: ConductorProcess,
) -> None:
    """--json carries the conductor's URL and the same provider rows."""
    result = demi("status", "--json", env={"DEMI_PORT": str(conductor.port)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["conductor"] == conductor.url
    assert [p["name"] for p in data["providers"]] == ["ollama", "lmstudio"]


def test_status_discover_lists_engines_models_and_config(
    demi: Demi, fake_server_factory: Callable[..., FakeServer],
) -> None:
    """With discovery off, the engines are listed as unused, each with the YAML to use it;
    the YAML is valid config."""
    llama = fake_server_factory("engines", args=["--flavour", "llamacpp", "--model", "qwen"])
    jan = fake_server_factory("engines", args=["--flavour", "jan", "--api-key", "k"])
    ports = f"{llama.port},{jan.port}"
    result = demi("status", "--discover", env={"DEMI_DISCOVER_PORTS": ports})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Engines running on this machine:" in out
    rows = table_rows(out, first="PORT")
    assert rows[str(llama.port)]["ENGINE"] == "llama.cpp server"
    assert rows[str(llama.port)]["MODELS"] == "qwen"
    assert rows[str(llama.port)]["IN_USE"] == "no"
    assert rows[str(jan.port)]["IN_USE"] == "no: it needs an API key"
    snippets = [line.strip() for line in out.splitlines() if line.startswith("  llm: ")]
    assert len(snippets) == 2
    entry = DemiConfig.from_mapping(yaml.safe_load(snippets[0])).llm.providers[0]
    assert (entry.base_url, entry.model) == (llama.url, "qwen")
    assert "llm.discover is off" in out


def test_status_discover_marks_engines_the_chain_uses(
    demi: Demi, fake_server_factory: Callable[..., FakeServer],
) -> None:
    """With discovery on, a found engine is in the table as discovered and listed in use."""
    vllm = fake_server_factory("engines", args=["--flavour", "vllm"])
    result = demi("status", "--discover", env={"DEMI_DISCOVER": "true",
                                               "DEMI_DISCOVER_PORTS": str(vllm.port)})
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    name = f"vllm-{vllm.port}"
    assert rows[name]["SOURCE"] == "discovered" and rows[name]["REACHABLE"] == "yes"
    assert rows["ollama"]["SOURCE"] == "config"
    assert f"yes, discovered as {name}" in result.stdout
