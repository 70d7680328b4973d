"""`%%chat --compare`: several replies streaming side by side in one display.

Each model gets a `Column` (the same events as a `LiveView`); the `CompareView`
draws all columns in one HTML grid, throttled like a single reply, and ends
with a table of their timings. While they stream, columns show text as written (a
half-streamed Markdown table or fence would jump about); the final frame is Markdown,
each column's reply rendered by the front end itself as a single reply is (an HTML grid
whose cells hold Markdown between blank lines, which CommonMark renders).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any

from nbllm import _numbers as numbers
from nbllm._calls.results import ChatResult, StatusEvent, ToolCall
from nbllm._constants import CHARS_PER_TOKEN
from nbllm._safe_markdown import inert_markdown
from nbllm._views.reply import (
    WAITING,
    Clock,
    Display,
    Handle,
    Throttle,
    ToolLine,
    countdown_from,
    error_card_markdown,
    error_card_text,
    result_metadata,
)

_GRID = "display:grid;grid-template-columns:repeat({n},minmax(0,1fr));gap:12px;align-items:start"
_TEXT = "white-space:pre-wrap;font-family:var(--jp-content-font-family,inherit);margin:4px 0"
_FOOT = "opacity:0.7;font-size:smaller"
LIVE_COLUMN_CHARS = 3_000
"""How much of each reply a live --compare frame shows: its latest words. A grid is one output,
so a frame resends every column; bounded, a frame costs the same at any length and the
cadence stays fixed, as a single reply's open tail does."""


class Column:
    """One model's reply inside a `CompareView`."""

    def __init__(self, parent: CompareView, model: str) -> None:
        self.parent = parent
        self.model = model
        self.text = ""
        self.thought_chars = 0
        self.notice: str | None = None
        self.result: ChatResult | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self.notice = WAITING
        self.parent.changed(force=True)

    def offer_stop(self, stop: Callable[[], object]) -> None:
        """Columns have no Stop of their own: the panel's stops each, an interrupt stops all."""

    def reasoning(self, text: str) -> None:
        """Columns are for comparing answers: the thinking shows as its size only (the full
        text is on each model's result)."""
        first = not self.thought_chars
        self.thought_chars += len(text)
        tokens = numbers.count(max(1, round(self.thought_chars / CHARS_PER_TOKEN)), estimated=True)
        self.notice = f"thinking\N{HORIZONTAL ELLIPSIS} {tokens} tokens"  # one unit in every view
        self.parent.changed(force=first)

    def token(self, text: str) -> None:
        first = not self.text
        self.text += text
        self.notice = None
        self.parent.changed(force=first)

    def status(self, event: StatusEvent) -> None:
        countdown = countdown_from(event, self.parent.clock())
        self.notice = countdown.text(self.parent.clock()) if countdown else event.message
        self.parent.changed(force=True)

    def tool_call(self, call: ToolCall) -> None:
        self.text += "\n" + ToolLine(call).text() + "\n"
        self.parent.changed(force=True)

    def tool_result(self, call: ToolCall, text: str, ok: bool) -> None:
        self.text += "  -> " + text[:300] + "\n"
        self.parent.changed(force=True)

    def finish(self, result: ChatResult, error: BaseException | None = None, note: str | None = None) -> None:
        self.result, self.error = result, error
        self.notice = None
        self.parent.changed(force=True)

    def html(self) -> str:
        """The live column: its model and the latest `LIVE_COLUMN_CHARS` of its reply, so every
        update costs the same at any length (the final frame has every word)."""
        shown = self.text
        if len(shown) > LIVE_COLUMN_CHARS:
            cut = shown.find(" ", len(shown) - LIVE_COLUMN_CHARS)
            shown = shown[cut + 1 if cut >= 0 else len(shown) - LIVE_COLUMN_CHARS :]
            earlier = len(self.text) - len(shown)
            shown = f"[\N{HORIZONTAL ELLIPSIS} {earlier:,} characters above, shown when it ends]\n{shown}"
        parts = [
            f"<div><b>{html.escape(self.model)}</b>",
            f"<div style='{_TEXT}'>{html.escape(shown)}</div>",
        ]
        if self.error is not None:
            parts.append(f"<div style='color:#c62828'>{html.escape(error_card_text(self.error))}</div>")
        footer = self.result.footer() if self.result else (self.notice or "streaming")
        parts.append(f"<div style='{_FOOT}'>{html.escape(footer)}</div></div>")
        return "".join(parts)

    def markdown(self) -> str:
        """The column in the final frame: the reply as Markdown, made inert (no raw HTML, so
        nothing in it can close the column's ``<div>``; an open fence is closed too)."""
        parts = [
            "<div style='min-width:0;overflow-wrap:anywhere'>",
            "",
            f"<b>{html.escape(self.model)}</b>",
            "",
        ]
        if self.text:
            parts += [inert_markdown(self.text, close_fence=True), ""]
        if self.error is not None:
            parts += [error_card_markdown(self.error, self.model), ""]
        if self.result is not None:
            parts += [f"<sub>{html.escape(self.result.footer())}</sub>", ""]
        parts.append("</div>")
        return "\n".join(parts)

    def plain(self) -> str:
        lines = [f"== {self.model} ==", self.text]
        if self.error is not None:
            lines.append(error_card_text(self.error))
        if self.result is not None:
            lines.append(f"[{self.result.footer()}]")
        return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "" if value is None else numbers.seconds(value)


_TABLE_HEADINGS = ("model", "status", "answer after", "total", "thinking", "answer tokens", "cost", "tok/s")


class CompareView:
    def __init__(
        self,
        models: list[str],
        *,
        live: bool = True,
        throttle: Throttle | None = None,
        display: Display | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.columns = [Column(self, model) for model in models]
        self.live = live
        self.throttle = throttle or Throttle()
        self.handle = Handle(display)
        self.clock = clock
        self.dirty = False
        self.finished = False

    def changed(self, *, force: bool = False) -> None:
        self.dirty = True
        if force:
            self._draw()
        else:
            self.tick()

    def tick(self) -> None:
        if self.dirty and self.throttle.due(self.clock(), 0):  # frames are bounded: a fixed cadence
            self._draw()

    def _grid(self) -> str:
        cells = "".join(column.html() for column in self.columns)
        return f"<div style='{_GRID.format(n=len(self.columns))}'>{cells}</div>"

    def _table(self) -> str:
        """Timings side by side. "answer after" is when each answer began (a reasoning model's
        first token is a thought), and thinking tokens are counted apart from the answer's."""
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in _TABLE_HEADINGS)
        model_cell = "text-align:left;overflow-wrap:anywhere"  # a long id wraps; the figures do not
        rows = []
        for column in self.columns:
            r = column.result
            if r is None:
                continue
            usage = r.usage
            thinking = numbers.count(usage.reasoning_tokens, estimated=r.thinking_estimated)
            cells = (
                r.model,
                "stopped" if r.status == "cancelled" else r.status,
                _seconds(r.answer_after_s),
                _seconds(r.latency_s),
                thinking if usage.reasoning_tokens else "",
                numbers.count(r.answer_tokens, estimated=usage.estimated),
                "" if r.cost is None else numbers.cost(r.cost, estimated=not r.cost_reported),
                f"{r.tokens_per_s:.1f}" if r.tokens_per_s and not usage.estimated else "",
            )
            styles = [model_cell] + ["text-align:left;white-space:nowrap"] * (len(cells) - 1)
            tds = "".join(
                f"<td style='{style}'>{html.escape(c)}</td>" for style, c in zip(styles, cells, strict=True)
            )
            rows.append(f"<tr>{tds}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    def _draw(self) -> None:
        self.dirty = False
        self.throttle.mark(self.clock())
        if self.live and not self.finished:
            models = [c.model for c in self.columns]
            self.handle.send({"text/html": self._grid()}, {"nbllm": {"compare": models}})

    def finish(self) -> None:
        """The final frame: every column, then the timing table."""
        if self.finished:
            return
        self.finished = True
        plain = "\n\n".join(column.plain() for column in self.columns)
        metadata: dict[str, Any] = {
            "nbllm": {"compare": [result_metadata(c.result)["nbllm"] for c in self.columns if c.result]}
        }
        grid = "\n".join(column.markdown() for column in self.columns)
        style = _GRID.format(n=len(self.columns))
        markdown = f"<div style='{style}'>\n{grid}\n</div>\n\n{self._table()}"
        self.handle.send({"text/markdown": markdown, "text/plain": plain}, metadata)
