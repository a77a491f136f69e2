"""Run the CLI as a real subprocess, isolated from the developer's own configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 60  # seconds; only to turn a hang into a failure, never a timing assertion
_LEAKY_PREFIXES = ("DEMI_", "OLLAMA_", "LMSTUDIO_")


def clean_environ() -> dict[str, str]:
    """os.environ without any DEMI/Ollama/LM Studio setting the developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            "DEMI_EMBEDDED_ENABLED": "false",
            "DEMI_DISCOVER": "false",  # an engine on this machine must not join the chain
        }
    )
    return env


@dataclass
class Demi:
    """``python -m src.conductor`` started from ``cwd`` (a tmp dir, so no stray .env is read)."""

    cwd: Path
    env: dict[str, str] = field(default_factory=clean_environ)

    def __call__(
        self,
        *args: str,
        stdin: str = "",
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "src.conductor", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=HANG_GUARD,
            check=False,
        )


def table_rows(output: str, first: str = "PROVIDER") -> dict[str, dict[str, str]]:
    """Parse a table whose header starts with ``first``: first cell -> {column: cell}, cut
    at the header offsets (column names are single words, or ``IN USE``)."""
    lines = output.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith(first))
    header = lines[header_at]
    names = header.replace("IN USE", "IN_USE").split()
    starts = [header.index(name.replace("IN_USE", "IN USE")) for name in names]
    ends = [*starts[1:], None]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[header_at + 1 :]:
        if not line.strip():
            break  # a blank line separates the table from the notes under it
        cells = {n: line[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)}
        rows[cells[first]] = cells
    return rows


def chat_messages(requests: list[dict[str, object]]) -> list[list[dict[str, str]]]:
    """The ``messages`` of every chat request a fake received, oldest first."""
    out = []
    for req in requests:
        body = req.get("json")
        if str(req.get("path", "")).endswith("/chat/completions") or req.get("path") == "/api/chat":
            assert isinstance(body, dict)
            out.append([{"role": m["role"], "content": m["content"]} for m in body["messages"]])
    return out
