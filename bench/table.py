"""A small aligned Markdown table (readable in a terminal and rendered on GitHub)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def ms(value: float, signed: bool = False) -> str:
    """Milliseconds with sensible precision (NaN → n/a)."""
    if math.isnan(value):
        return "n/a"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def ratio(value: float | None, what: str) -> str:
    if value is None or math.isnan(value) or math.isinf(value):
        return "n/a"
    return f"{value:.2f}× {what}"


def safe_div(a: float, b: float) -> float | None:
    """a / b, or None when b is not clearly positive (a ratio to noise means nothing)."""
    if math.isnan(a) or math.isnan(b) or b < 1e-3:
        return None
    return a / b
