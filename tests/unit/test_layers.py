"""The package's layers import one way: conductor → llm → core; the test doubles in
``src.testing`` stand apart (no layer imports them; the fake servers, which run as
processes of their own, import no layer; the scripted provider uses only the LLM layer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
# Each layer and the layers it must never import.
FORBIDDEN = {
    "core": ("src.llm", "src.conductor", "src.testing"),
    "llm": ("src.conductor", "src.testing"),
    "conductor": ("src.testing",),
    "testing": ("src.conductor", "tests"),
    "testing/fakes": ("src.core", "src.llm", "src.conductor", "tests"),
}


def _imports(path: Path) -> list[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.append(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_upward_import(layer: str) -> None:
    """No module of a lower layer imports a higher one (not even under TYPE_CHECKING)."""
    upward = [
        f"{path.relative_to(SRC.parent)} imports {name}"
        for path in sorted((SRC / layer).rglob("*.py"))
        for name in _imports(path)
        if name.startswith(FORBIDDEN[layer])
    ]
    assert upward == []
