"""The panel's latency chart: one line per model over its recent calls, as inline SVG.

SVG needs no plotting library and no front-end extension, renders in every Jupyter
front end and in a saved notebook, and is text, so tests can read it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from nbllm._calls.history import CallRecord

WIDTH_PX = 520
HEIGHT_PX = 160
MARGIN_PX = 34
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
ERROR_COLOR = "#d62728"


def latency_chart_svg(records: Sequence[CallRecord]) -> str:
    """Latency in seconds (y) by call, oldest first (x); a red cross marks a failed call."""
    if not records:
        return "<p class='nbllm-chart'>No calls yet: the latency chart fills in as %%chat cells run.</p>"
    top = max((r.latency_s or 0.0) for r in records) or 1.0
    top *= 1.1
    plot_w = WIDTH_PX - 2 * MARGIN_PX
    plot_h = HEIGHT_PX - 2 * MARGIN_PX
    step = plot_w / max(1, len(records) - 1)

    def x_of(index: int) -> float:
        return MARGIN_PX + index * step

    def y_of(seconds: float) -> float:
        return MARGIN_PX + plot_h * (1 - seconds / top)

    models = list(dict.fromkeys(r.model for r in records))
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH_PX}' "
        f"height='{HEIGHT_PX}' role='img' aria-label='latency per model'>",
        f"<line x1='{MARGIN_PX}' y1='{MARGIN_PX + plot_h}' x2='{MARGIN_PX + plot_w}' "
        f"y2='{MARGIN_PX + plot_h}' stroke='#999'/>",
        f"<line x1='{MARGIN_PX}' y1='{MARGIN_PX}' x2='{MARGIN_PX}' y2='{MARGIN_PX + plot_h}' stroke='#999'/>",
        f"<text x='2' y='{MARGIN_PX + 4}' font-size='10'>{top:.2f} s</text>",
        f"<text x='2' y='{MARGIN_PX + plot_h}' font-size='10'>0 s</text>",
    ]
    for number, model in enumerate(models):
        color = COLORS[number % len(COLORS)]
        points = [
            (x_of(i), y_of(r.latency_s))
            for i, r in enumerate(records)
            if r.model == model and r.status == "ok" and r.latency_s is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f"<polyline class='nbllm-line' points='{path}' fill='none' stroke='{color}'/>")
        parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{color}'/>" for x, y in points]
    for i, record in enumerate(records):
        if record.status != "ok":
            x, y = x_of(i), y_of(record.latency_s or 0.0)
            parts.append(
                f"<path class='nbllm-error' d='M{x - 3:.1f},{y - 3:.1f}L{x + 3:.1f},{y + 3:.1f}"
                f"M{x - 3:.1f},{y + 3:.1f}L{x + 3:.1f},{y - 3:.1f}' stroke='{ERROR_COLOR}'/>"
            )
    parts.append("</svg>")
    legend = "".join(
        f"<span style='color:{COLORS[n % len(COLORS)]};margin-right:1em'>&#9679; {html.escape(m)}</span>"
        for n, m in enumerate(models)
    )
    return "<div class='nbllm-chart'>" + "".join(parts) + f"<div>{legend}</div></div>"
