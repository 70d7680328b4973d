"""A reasoning model's thinking, shown apart from its answer.

While a reply streams, the thinking is a collapsed section above the answer whose title says
how long the model has been thinking and how much it wrote. It is an ipywidgets `Accordion`
(`LiveThinkingFrame`) because the user must be able to open it while it streams: every update
of a Markdown output replaces its HTML, which would shut an opened ``<details>`` again, whereas
a widget's children are updated in place and keep the user's choice. The final frame is plain
Markdown (`thinking_markdown`), so saved notebooks, nbval and nbconvert see no widget.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from nbllm import _numbers as numbers
from nbllm._calls.results import ChatResult
from nbllm._constants import CHARS_PER_TOKEN, MAX_SHOWN_THINKING_CHARS
from nbllm._safe_markdown import inert_markdown

Bundle = dict[str, Any]
THINKING_STYLE = "white-space: pre-wrap; line-height: 1.45; opacity: 0.7; font-size: 0.92em"
"""Dimmed, and with the widget's one-line height undone."""


@dataclass
class Thinking:
    """The thinking a reply has shown so far, and when it started and stopped (view clock)."""

    pieces: list[str] = field(default_factory=list)
    length: int = 0
    started: float | None = None
    ended: float | None = None

    def add(self, text: str, now: float) -> None:
        if self.started is None:
            self.started = now
        self.pieces.append(text)
        self.length += len(text)

    def end(self, now: float) -> None:
        """The answer began (or the reply ended): the thinking time stops here."""
        if self.started is not None and self.ended is None:
            self.ended = now

    @property
    def shown(self) -> bool:
        return self.length > 0

    @property
    def text(self) -> str:
        return "".join(self.pieces).strip()

    def seconds(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else now) - self.started

    def title(self, now: float) -> str:
        # Tokens, as the final frame counts them (estimated here from the characters).
        size = f"~{max(1, round(self.length / CHARS_PER_TOKEN)):,} tokens"
        if self.ended is None:
            return f"Thinking\N{HORIZONTAL ELLIPSIS} {self.seconds(now):.0f} s \N{MIDDLE DOT} {size}"
        return f"Thought for {numbers.seconds(self.seconds(now))} \N{MIDDLE DOT} {size}"


def _summary(result: ChatResult) -> str:
    parts = []
    if result.thinking_s is not None:
        parts.append(numbers.seconds(result.thinking_s))
    if result.usage.reasoning_tokens:
        parts.append(
            f"{numbers.count(result.usage.reasoning_tokens, estimated=result.thinking_estimated)} tokens"
        )
    return "Thought" + (" for " + ", ".join(parts) if parts else "")


def thinking_markdown(result: ChatResult, *, open_: bool) -> str:
    """The final frame's thinking section: a ``<details>`` block, closed unless asked open, its
    text quoted (shown dimmed) and escaped, so no tag in it can end the block early."""
    if not result.reasoning:
        return ""
    shown = result.reasoning
    if len(shown) > MAX_SHOWN_THINKING_CHARS:  # the saved notebook keeps a part; Python has it all
        left = len(shown) - MAX_SHOWN_THINKING_CHARS
        shown = shown[:MAX_SHOWN_THINKING_CHARS] + f"\n\n[{left:,} more characters in nbllm.last().reasoning]"
    quoted = _quote(shown)
    summary = f"<summary><i>{html.escape(_summary(result))}</i></summary>"
    return f"<details{' open' if open_ else ''}>{summary}\n\n{quoted}\n\n</details>"


def thinking_plain(result: ChatResult, *, full: bool) -> str:
    """The thinking in the final frame's plain text: all of it, or one line saying it exists."""
    if not result.reasoning:
        return ""
    if full:
        return f"[{_summary(result)}]\n{result.reasoning}\n[answer]"
    return f"[{_summary(result)}; the thinking is in nbllm.last().reasoning]"


THINKING_WINDOW_CHARS = 2_000
"""Without widgets, how much of the latest thinking the live frame shows."""


def thinking_window(thinking: Thinking, now: float) -> str:
    """The live thinking as Markdown, for front ends without widgets: its title, then (while
    the model still thinks) the latest `THINKING_WINDOW_CHARS` of it quoted, dimmed by the
    quote; the final frame has all of it."""
    title = f"*{html.escape(thinking.title(now))}*"
    if thinking.ended is not None:
        return f"> {title}"
    text = "".join(thinking.pieces[-400:]).strip()  # the latest pieces: never the whole of a long text
    if len(text) > THINKING_WINDOW_CHARS:
        text = "\N{HORIZONTAL ELLIPSIS}" + text[-THINKING_WINDOW_CHARS:]
    return f"> {title}\n>\n{_quote(text)}"


def _quote(text: str) -> str:
    """`text` as a Markdown quote (shown dimmed), escaped, so no tag in it can act."""
    lines = text.split("\n")
    return "\n".join(f"> {inert_markdown(html.escape(line))}" if line.strip() else ">" for line in lines)


class LiveThinkingFrame:
    """The live frame of a reply that thinks: the thinking section (collapsed), then the answer
    as Markdown in an `Output` widget. One widget tree, shown through the reply's one handle.

    The thinking is a column of `HTML` children: once the last one holds `THINKING_FREEZE_CHARS`,
    it is left as it is and a new one takes what follows, so an update resends only the open
    child, however long the model thinks."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._widgets = widgets
        self._thinking = widgets.HTML()
        self._column = widgets.VBox([self._thinking])
        self.section = widgets.Accordion(children=[self._column], selected_index=None)
        self.section.add_class("nbllm-thinking")
        self.answer = widgets.Output()
        self.answer.add_class("nbllm-answer")
        self.box = widgets.VBox([self.section, self.answer])
        self.title = ""
        """The section's title as last sent."""
        self._pieces_seen = 0
        self._open_text = ""
        """The thinking in the open child (the text before it is in children left as they are)."""
        self._answer = ""

    def bundle(self) -> Bundle:
        return dict(self.box._repr_mimebundle_())

    def retitle(self, title: str) -> None:
        if title != self.title:
            self.title = title
            self.section.titles = (title,)

    def update(self, title: str, thinking: Thinking, answer_markdown: str) -> None:
        """Send only what changed: the title, the open part of the thinking, the answer."""
        self.retitle(title)
        if len(thinking.pieces) != self._pieces_seen:
            new = "".join(thinking.pieces[self._pieces_seen :])
            self._pieces_seen = len(thinking.pieces)
            text = self._open_text + new
            if not self._column.children[:-1]:  # the first child: no blank lines on top
                text = text.lstrip()
            cut = _plain_cut(text)
            if cut:
                self._thinking.value = _thinking_html(text[:cut])
                self._thinking = self._widgets.HTML()
                self._column.children = (*self._column.children, self._thinking)
                text = text[cut:]
            self._open_text = text
            self._thinking.value = _thinking_html(text)
        if answer_markdown != self._answer:
            self._answer = answer_markdown
            self.answer.outputs = (
                {"output_type": "display_data", "data": {"text/markdown": answer_markdown}, "metadata": {}},
            )

    def close(self) -> None:
        """Release the widgets (the final Markdown frame has replaced them on screen)."""
        for widget in (*self._column.children, self._column, self.section, self.answer, self.box):
            widget.close()


THINKING_FREEZE_CHARS = 4_000


def _plain_cut(text: str) -> int:
    """Where to leave the open thinking child once it is long: after its last line break, or
    its last space; 0 for not yet."""
    if len(text) < THINKING_FREEZE_CHARS:
        return 0
    for mark in ("\n", " "):
        at = text.rfind(mark, 0, len(text) - 1)
        if at > 0:
            return at + 1
    return len(text)


def _thinking_html(text: str) -> str:
    return f'<div style="{THINKING_STYLE}">{html.escape(text.rstrip())}</div>'
