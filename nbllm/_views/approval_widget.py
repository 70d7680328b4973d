"""The approval widget: Approve / Deny / Approve all in this cell, before a tool runs.

It shows the tool's name and its arguments (escaped; long ones folded in a ``<details>``) and
a countdown; with no click before the timeout the call is denied, so ``Run All`` with nobody
at the screen never hangs. Once decided, the widget is replaced by one line saying what was
decided, which is what a saved notebook keeps. The clicks arrive on the kernel's loop, where a
``%%chat`` cell awaits (a top-level await, see `nbllm.magics.chat`)."""

from __future__ import annotations

import asyncio
import html
import json
import time
from typing import Any

from nbllm._calls.results import ToolCall
from nbllm._cells.approval import Decision
from nbllm._cells.tools import Tool
from nbllm._cells.ui_thread import Ui
from nbllm._views.reply import Display, Handle

SHOWN_ARGUMENT_CHARS = 400
FINAL_WORDS: dict[str, str] = {
    "approved": "\N{CHECK MARK} approved",
    "approve-all": "\N{CHECK MARK} approved, with the rest of this cell's tool calls",
    "denied": "\N{BALLOT X} denied",
    "timeout": "\N{BALLOT X} denied: nobody approved it in time",
}


def arguments_html(arguments: str) -> str:
    """The call's arguments, pretty when they are JSON, escaped, and folded when long."""
    try:
        text = json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        text = arguments
    if len(text) <= SHOWN_ARGUMENT_CHARS:
        return f"<pre style='margin:2px 0'>{html.escape(text)}</pre>"
    head = html.escape(text[:SHOWN_ARGUMENT_CHARS])
    return (
        f"<details><summary><code>{head}\N{HORIZONTAL ELLIPSIS}</code> ({len(text):,} characters: "
        f"click to see all)</summary><pre>{html.escape(text)}</pre></details>"
    )


class WidgetApprover:
    """Asks with buttons in the cell's output (see the module docstring)."""

    def __init__(self, display: Display | None = None) -> None:
        self.display = display
        self.last_widget: Any = None
        """The widget of the question asked last (tests click it)."""

    async def decide(self, call: ToolCall, tool: Tool, timeout_s: float, ui: Ui) -> Decision:
        import ipywidgets

        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Decision] = loop.create_future()

        def settle(decision: Decision) -> None:
            if not answer.done():
                answer.set_result(decision)

        def choose(decision: Decision) -> None:  # a click: on the kernel's thread, maybe not the loop's
            loop.call_soon_threadsafe(settle, decision)

        buttons = []
        choices: tuple[tuple[str, Decision, str], ...] = (
            ("Approve", "approved", "success"),
            ("Deny", "denied", "danger"),
            ("Approve all in this cell", "approve-all", ""),
        )
        for label, choice, style in choices:
            button = ipywidgets.Button(
                description=label, button_style=style, layout=ipywidgets.Layout(width="auto")
            )
            button.add_class(f"nbllm-approval-{choice}")
            button.on_click(lambda _, choice=choice: choose(choice))
            buttons.append(button)
        countdown = ipywidgets.HTML()
        question = ipywidgets.HTML(
            f"<b>The model asks to run <code>{html.escape(tool.name)}</code></b> "
            f"<span style='opacity:0.7'>(not declared read-only)</span>{arguments_html(call.arguments)}"
        )
        box = ipywidgets.VBox([question, ipywidgets.HBox([*buttons, countdown])])
        box.add_class("nbllm-approval")
        self.last_widget = box
        handle = Handle(self.display)
        handle.send(box._repr_mimebundle_(), {"nbllm": {"approval": tool.name}})
        deadline = time.monotonic() + timeout_s
        decision: Decision = "timeout"
        try:
            while not answer.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                countdown.value = f"<i>denied in {left:.0f} s without a click</i>"
                try:
                    await asyncio.wait_for(asyncio.shield(answer), timeout=min(1.0, left))
                except asyncio.TimeoutError:
                    continue
            if answer.done():
                decision = answer.result()
        finally:
            words = FINAL_WORDS.get(decision, decision)
            line = f"*{html.escape(words)}: `{tool.name}`*"
            handle.send(
                {"text/markdown": line, "text/plain": f"{words}: {tool.name}"},
                {"nbllm": {"approval": tool.name}},
            )
            box.close()
            for button in buttons:
                button.close()
        return decision
