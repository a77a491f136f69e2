"""``--help`` works on the program and on every command, without touching any provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import Demi

EXPECTED = {
    (): ["serve", "chat", "ask", "status", "--config", "--port"],
    ("serve",): ["--host", "--port", "--ollama-url", "--lmstudio-url", "--no-fallback"],
    ("chat",): ["--provider", "--system", "--config", "--log-level"],
    ("ask",): ["--provider", "--system", "--json", "--no-fallback"],
    ("status",): ["--json", "--ollama-url", "--lmstudio-url"],
}


@pytest.mark.parametrize("command", list(EXPECTED), ids=lambda c: " ".join(c) or "program")
def test_help_lists_the_options(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Each --help exits 0 and names the command's options."""
    result = Demi(tmp_path)(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    for word in EXPECTED[command]:
        assert word in result.stdout
