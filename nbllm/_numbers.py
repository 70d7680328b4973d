"""How nbllm writes a number for a person, the same in every view (footers, tables, the
panel, dry runs, the batch bar): seconds, dollars, token counts and context windows.

"~" marks an estimate wherever one is shown or summed. The live status line's clock is not
a measurement and ticks in tenths of its own (see `nbllm._views.reply`).
"""

from __future__ import annotations

import math


def seconds(value: float) -> str:
    """A duration to three significant digits, at most two decimals: 0.42 s, 6.83 s, 12.4 s,
    125 s."""
    if value < 10:
        return f"{value:.2f} s"
    if value < 100:
        return f"{value:.1f} s"
    return f"{value:.0f} s"


def cost(dollars: float, *, estimated: bool = False) -> str:
    """Dollars: cents from a dollar up, two significant digits below, and "<$0.001" for what
    would need more ("~" for an estimate)."""
    mark = "~" if estimated else ""
    if dollars == 0:
        return f"{mark}$0"
    if dollars < 0.001:
        return "<$0.001"  # a bound: no estimate mark needed
    if dollars < 1:
        return f"{mark}${float(f'{dollars:.2g}'):.{max(2, -math.floor(math.log10(dollars)) + 1)}f}"
    return f"{mark}${dollars:,.2f}"


def count(n: int, *, estimated: bool = False) -> str:
    """A token count with thousands separators ("~" for an estimate)."""
    return f"{'~' if estimated else ''}{n:,}"


def window(tokens: int | None) -> str:
    """A context window: thousands separators, or "unknown"."""
    return "unknown" if tokens is None else f"{tokens:,}"
