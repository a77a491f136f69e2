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


def test_the_conductor_uses_only_the_llm_layers_public_api() -> None:
    """The conductor imports the LLM layer only as the package (its ``__all__``), never one
    of its modules: the layer's inside can move without touching the HTTP faces."""
    reaching_in = [
        f"{path.relative_to(SRC.parent)} imports {name}"
        for path in sorted((SRC / "conductor").rglob("*.py"))
        for name in _imports(path)
        if name.startswith("src.llm.")
    ]
    assert reaching_in == []


def test_the_public_api_is_what_all_lists() -> None:
    """Every name in ``src.llm.__all__`` exists, the list is sorted and has no duplicates,
    and every name the conductor imports from the layer is in it."""
    import src.llm as llm

    assert sorted(set(llm.__all__)) == list(llm.__all__)
    missing = [name for name in llm.__all__ if not hasattr(llm, name)]
    assert missing == []
    used = set()
    for path in (SRC / "conductor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module == "llm":
                used.update(alias.name for alias in node.names)
    assert used and used <= set(llm.__all__)
