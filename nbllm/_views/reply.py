"""Showing a reply while it streams and when it ends. No magics here.

A *view* receives what happens to one `%%chat` cell (tokens, status events, tool
calls and results, the end) and decides what to draw:

- `LiveView` keeps one display handle per reply. The first token is drawn at
  once; later ones are coalesced by a `Throttle`; the final frame is drawn by
  `finish`, which callers run in a ``finally``. With ``live=False`` it draws only
  the final frame (headless runs: nbval and nbconvert compare that).
- `TerminalView` writes tokens to stdout as they arrive (terminal IPython prints
  every display update in full, so handles are no use there).

Views are not thread-safe: one thread calls them (the kernel's main thread).
"""

from __future__ import annotations

import html
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from nbllm._calls.results import ChatResult, StatusEvent, ToolCall
from nbllm._constants import CHARS_PER_TOKEN, THROTTLE_MS, THROTTLE_STRETCH_CHARS
from nbllm._exceptions import NbllmError, ThinkingBudgetError
from nbllm._safe_markdown import inert_markdown
from nbllm._views.blocks import find_cut, freeze_size
from nbllm._views.thinking import (
    LiveThinkingFrame,
    Thinking,
    thinking_markdown,
    thinking_plain,
    thinking_window,
)

Clock = Callable[[], float]
Bundle = dict[str, str]
TOOL_TEXT_LIMIT = 300
DIM, UNDIM = "\x1b[2m", "\x1b[22m"
"""ANSI faint on and off: a terminal shows the thinking dimmed."""
WAITING = "waiting for first token\N{HORIZONTAL ELLIPSIS}"
CURSOR = "\N{LEFT ONE QUARTER BLOCK}"
"""Ends the text while it streams (the final frame has none)."""
LIVE_METADATA: dict[str, Any] = {}
"""Live frames carry no metadata: a long reply sends hundreds of them, and the final frame has
the reply's facts (`result_metadata`)."""
STOP_METADATA = {"nbllm": {"stop": True}}
"""Marks the Stop button's output, so a reader of the outputs can tell it from the reply's."""
INTERRUPT_TO_STOP = "to stop: interrupt the kernel (\N{BLACK SQUARE})"


class Throttle:
    """Whether a live update is due: at most one per interval, and the interval grows in
    proportion to the text once it is longer than `stretch_chars`. Every update resends the
    whole text, so a fixed interval would send bytes quadratic in the reply's length; a
    stretched one keeps them near-linear while short replies stay smooth."""

    def __init__(
        self, interval_s: float = THROTTLE_MS / 1000, stretch_chars: int = THROTTLE_STRETCH_CHARS
    ) -> None:
        self.interval_s = interval_s
        self.stretch_chars = stretch_chars
        self.last: float | None = None

    def interval_for(self, length: int) -> float:
        if self.stretch_chars <= 0:
            return self.interval_s
        return self.interval_s * max(1.0, length / self.stretch_chars)

    def due(self, now: float, length: int) -> bool:
        return self.last is None or now - self.last >= self.interval_for(length)

    def mark(self, now: float) -> None:
        self.last = now

    def take(self, now: float, length: int = 0) -> bool:
        """Whether an update is due now; if so, it counts as made."""
        if not self.due(now, length):
            return False
        self.mark(now)
        return True

    def reset(self) -> None:
        """Let the next update through, whenever it comes (a final frame)."""
        self.last = None


class Display(Protocol):
    """Where frames go: IPython's display machinery, or a recorder in tests."""

    def show(self, bundle: Bundle, metadata: dict[str, Any], display_id: str) -> None: ...

    def update(self, bundle: Bundle, metadata: dict[str, Any], display_id: str) -> None: ...


class IPythonDisplay:
    def show(self, bundle: Bundle, metadata: dict[str, Any], display_id: str) -> None:
        from IPython.display import display

        display(bundle, raw=True, metadata=metadata, display_id=display_id)

    def update(self, bundle: Bundle, metadata: dict[str, Any], display_id: str) -> None:
        from IPython.display import update_display

        update_display(bundle, raw=True, metadata=metadata, display_id=display_id)


class Handle:
    """One display handle: the first frame is shown, later frames replace it in place."""

    def __init__(self, display: Display | None = None) -> None:
        self.display = display or IPythonDisplay()
        self.display_id = uuid.uuid4().hex
        self.shown = False
        self.updates = 0
        """Frames sent, the first included."""

    def send(self, bundle: Bundle, metadata: dict[str, Any]) -> None:
        if self.shown:
            self.display.update(bundle, metadata, self.display_id)
        else:
            self.display.show(bundle, metadata, self.display_id)
            self.shown = True
        self.updates += 1


@dataclass(frozen=True)
class ToolLine:
    call: ToolCall
    result: str | None = None
    ok: bool = True

    def markdown(self) -> str:
        arguments = _clip(self.call.arguments or "{}")
        line = f"\N{WRENCH} `{_code(self.call.name)}({_code(arguments)})`"
        if self.result is not None:
            mark = "\N{RIGHTWARDS ARROW}" if self.ok else "\N{WARNING SIGN}"
            line += f" {mark} `{_code(_clip(self.result))}`"
        return line

    def text(self) -> str:
        line = f"[tool] {self.call.name}({_clip(self.call.arguments or '{}')})"
        if self.result is not None:
            line += f" -> {_clip(self.result)}"
        return line


def _clip(text: str, limit: int = TOOL_TEXT_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _code(text: str) -> str:
    return text.replace("`", "\N{MODIFIER LETTER GRAVE ACCENT}")


def result_metadata(result: ChatResult) -> dict[str, Any]:
    """The footer's facts, machine-readable, for the output's metadata."""
    return {
        "nbllm": {
            "model": result.model,
            "status": result.status,
            "finish_reason": result.finish_reason,
            "ttft_s": result.ttft_s,
            "latency_s": result.latency_s,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "tokens_estimated": result.usage.estimated,
            "tokens_per_s": result.tokens_per_s,
            "reasoning_tokens": result.usage.reasoning_tokens,
            "thinking_s": result.thinking_s,
            "retries": result.retries,
            "fallbacks": list(result.fallbacks),
            "request_id": result.request_id,
        }
    }


ERROR_CARD_STYLE = (
    "border-left: 4px solid #d32f2f; background: rgba(211, 47, 47, 0.08); "
    "padding: 0.4em 0.9em; margin: 0.3em 0; line-height: 1.5"
)


def error_title(error: BaseException, model: str | None = None) -> str:
    """The card's title: what failed and where ("HTTP 500 from acme-gateway")."""
    provider = model.split("/")[0] if model else None
    status = getattr(error, "status", None)
    what = f"HTTP {status}" if isinstance(status, int) else type(error).__name__
    return f"{what} from {provider}" if provider else what


def error_card_markdown(error: BaseException, model: str | None = None) -> str:
    """The one view of an error: a card in the error colour with a title, the error's message,
    the server's own words, the hint and the request id. Our own HTML (every text in it
    escaped), so a front end shows the colour; the cell's exception is one line pointing here."""
    message = error.message if isinstance(error, NbllmError) else str(error)
    # The title names the status and the provider; the body need not say them again.
    status = getattr(error, "status", None)
    for said in ([model] if model else []) + ([f"HTTP {status}"] if isinstance(status, int) else []):
        message = message.removeprefix(f"{said}: ").removeprefix(f"{said} ")
    rows = [
        f"<b>\N{WARNING SIGN} {html.escape(error_title(error, model))}</b> "
        f"<span style='opacity: 0.7'>{type(error).__name__}</span>",
        html.escape(message),
    ]
    upstream = getattr(error, "upstream_message", None)
    if upstream and upstream not in message:
        rows.append(f"<i>Server said:</i> {html.escape(upstream)}")
    hint = getattr(error, "hint", None)
    if hint:
        rows.append(f"<i>Hint:</i> {hint_html(hint)}")
    request_id = getattr(error, "request_id", None)
    if request_id:
        rows.append(f"<span style='opacity: 0.7'>request id {html.escape(str(request_id))}</span>")
    return f'<div class="nbllm-error" style="{ERROR_CARD_STYLE}">' + "<br>".join(rows) + "</div>"


_FLAG_VALUE = (
    r"[A-Z][A-Z_/]*(?::[A-Z_]+)?"  # a placeholder: PATH, PROVIDER/MODEL, USER:PASSWORD
    r"|[\w.:/@${}-]*[/=.:][\w.:/@${}-]*"  # a URL, a path, a name=value
    r"|low|medium|high|none|chat|auto|system|certifi|\d[\w.]*"
)
_COMMAND = re.compile(
    r"%%?llm_\w+(?: (?:--)?[\w/.:=${}-]+)*"  # a magic with its arguments
    r"|%%chat(?: [\w.:-]+/[\w./:-]+)?(?: --[\w-]+(?: [\w/.:=-]+)?)*"  # with a model, if one is named
    rf"|--[a-z][\w-]*(?: (?:{_FLAG_VALUE}))?"  # a flag, with its value when the value is clearly one
    r"|nbllm\.[\w.]+(?:\([^)]*\))?(?:\.\w+)*"
    r"|\$\{?[A-Z][A-Z0-9_]*\}?"
    r"|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"  # an environment variable's name
)


def hint_html(hint: str) -> str:
    """A hint with its commands, options, variables and nbllm calls in code formatting."""
    pieces, last = [], 0
    for command in _COMMAND.finditer(hint):
        pieces += [html.escape(hint[last : command.start()]), f"<code>{html.escape(command.group())}</code>"]
        last = command.end()
    pieces.append(html.escape(hint[last:]))
    return "".join(pieces)


def error_line(error: BaseException, *, sent: bool = True) -> str:
    """What a failed cell raises: one short line pointing at the card above it."""
    if not sent:
        return f"{type(error).__name__}: nothing was sent; see the error above"
    return f"{type(error).__name__}: see the error above; nbllm.last() holds any partial reply"


def error_card_text(error: BaseException) -> str:
    message = error.message if isinstance(error, NbllmError) else str(error)
    lines = [f"{type(error).__name__}: {message}"]
    upstream = getattr(error, "upstream_message", None)
    if upstream and upstream not in message:
        lines.append(f"Server said: {upstream}")
    if getattr(error, "hint", None):
        lines.append(f"Hint: {error.hint}")  # type: ignore[attr-defined]
    if getattr(error, "request_id", None):
        lines.append(f"Request id: {error.request_id}")  # type: ignore[attr-defined]
    return "\n".join(lines)


STATUS_NOTES = {
    "cancelled": "cancelled: the text above is partial",
    "incomplete": "incomplete: the stream ended early; the text above is partial",
}
"""What a reply that ended early says under its text (a failed one shows its error card)."""


def status_note(result: ChatResult, error: BaseException | None) -> str | None:
    """The note under a reply that ended early. One whose model spent its token limit thinking
    did not end early: its error card says what happened."""
    if isinstance(error, ThinkingBudgetError):
        return None
    return STATUS_NOTES.get(result.status)


@dataclass
class _Countdown:
    what: str
    deadline: float
    attempt: int
    attempts: int

    def text(self, now: float) -> str:
        remaining = max(0.0, self.deadline - now)
        shown = f"{remaining:.1f}" if remaining < 10 else f"{remaining:.0f}"  # never "0 s" for 0.5 s
        return f"{self.what}; retrying in {shown} s (attempt {self.attempt} of {self.attempts})"


def countdown_from(event: StatusEvent, now: float) -> _Countdown | None:
    if event.kind == "fallback" or event.wait_s <= 0:
        return None
    what = "rate limited" if event.kind == "rate_limited" else event.message.split(",")[0]
    return _Countdown(what, now + event.wait_s, event.attempt, event.attempts)


@dataclass
class _Transcript:
    """What a reply has shown so far: text segments (each kept as the pieces that arrived, joined
    when drawn: appending to one string per token would copy the whole reply each time) and
    tool lines, in order."""

    parts: list[list[str] | ToolLine] = field(default_factory=list)
    length: int = 0
    remote_images: bool = False
    """Whether the reply's remote images show as images (see `nbllm._safe_markdown`)."""

    def add_text(self, text: str) -> None:
        if self.parts and isinstance(self.parts[-1], list):
            self.parts[-1].append(text)
        else:
            self.parts.append([text])
        self.length += len(text)

    def add_tool(self, line: ToolLine) -> None:
        for index, part in enumerate(self.parts):
            if isinstance(part, ToolLine) and part.call.id == line.call.id:
                self.parts[index] = line
                return
        self.parts.append(line)

    def markdown(self) -> str:
        return "\n\n".join(
            p.markdown() if isinstance(p, ToolLine) else self._inert("".join(p)) for p in self.parts if p
        )

    def _inert(self, text: str) -> str:
        return inert_markdown(text, remote_images=self.remote_images)

    def text(self) -> str:
        return "\n".join(p.text() if isinstance(p, ToolLine) else "".join(p) for p in self.parts if p)

    def freeze(self, size: int) -> _Transcript | None:
        """Split off the finished blocks once the text is `size` long (see
        `nbllm._views.blocks`): return them, and keep only the open tail; None when nothing is
        finished yet."""
        texts = [i for i, part in enumerate(self.parts) if isinstance(part, list)]
        if not texts:
            return None
        last = texts[-1]
        text = "".join(self.parts[last])  # type: ignore[arg-type]
        cut = find_cut(text, size)
        if cut is None:
            return None
        done = _Transcript([*self.parts[:last], [cut.frozen(text)]], remote_images=self.remote_images)
        tail = cut.tail(text)
        self.parts = [[tail], *self.parts[last + 1 :]]
        self.length = len(tail)
        return done


class LiveView:
    """One display handle for one reply (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        live: bool = True,
        throttle: Throttle | None = None,
        display: Display | None = None,
        clock: Clock = time.monotonic,
        show_thinking: bool = False,
        remote_images: bool = False,
        widgets: bool = True,
    ) -> None:
        self.model = model
        self.live = live
        self.widgets = widgets
        """Whether the live thinking is a widget section; otherwise dimmed Markdown above the
        answer (front ends without a widget manager)."""
        self.show_thinking = show_thinking
        """Whether the final frame shows the thinking open (it is collapsed otherwise)."""
        self.thinking = Thinking()
        self.frame: LiveThinkingFrame | None = None
        """The live widget frame, from the first thought of a live reply to its final frame."""
        self.throttle = throttle or Throttle()
        self.handle = Handle(display)
        """The reply's first output: the live frame until the first blocks are finished, the
        final frame at the end."""
        self.more: list[Handle] = []
        """The outputs after the first, in order: the last holds the open tail, each one before
        it finished blocks (emptied when the final frame replaces them all)."""
        self.warm: list[str] = []
        """The finished blocks in the output before the tail's, as Markdown."""
        self.warm_length = 0
        self.warm_output: Handle | None = None
        """The output holding `warm` (None: the thinking frame's answer)."""
        self.clock = clock
        self.transcript = _Transcript(remote_images=remote_images)
        self.open = _Transcript(remote_images=remote_images)
        """The part of the reply not yet frozen into an output of its own: all that is redrawn."""
        self._drawn_length = 0
        self._rate: float | None = None
        """Characters of reply per update, smoothed: how big the open tail may grow."""
        self.notice: str | None = None
        self.countdown: _Countdown | None = None
        self.dirty = False
        self.finished = False
        self._countdown_text = ""
        self._second = 0
        """The whole seconds of thinking the live title showed last."""
        self.started_at: float | None = None
        self._status_step = 0
        self.stop_button: Any = None
        """The in-cell Stop (an ipywidgets Button) while the call is in flight, else None."""
        self.stop_output: Handle | None = None
        """The output holding `stop_button`: always the cell's last (see `_keep_stop_last`)."""

    # -- events ------------------------------------------------------------------

    def start(self) -> None:
        self.notice = WAITING
        self.started_at = self.clock()
        self._draw()

    def offer_stop(self, stop: Callable[[], object]) -> None:
        """A Stop button under the streaming reply that runs `stop` (the panel's Stop for
        this call). Without widgets, the status line says how to interrupt instead."""
        if not (self.live and self.widgets) or self.finished:
            return
        import ipywidgets

        button = ipywidgets.Button(
            description="Stop",
            icon="stop",
            tooltip="Stop this reply; the text so far is kept",
            layout=ipywidgets.Layout(width="auto"),
        )
        button.add_class("nbllm-cell-stop")
        button.on_click(lambda _: stop())
        self.stop_button = button
        self._show_stop()

    def _show_stop(self) -> None:
        self.stop_output = Handle(self.handle.display)
        bundle = dict(self.stop_button._repr_mimebundle_())
        bundle["text/plain"] = "[Stop]"  # not the widget's long repr: the Stop moves with long replies
        self.stop_output.send(bundle, STOP_METADATA)

    def _keep_stop_last(self) -> None:
        """A new output went below the Stop: move the Stop under it (outputs cannot move, so
        the old one is emptied and the button shown again below)."""
        if self.stop_output is not None:
            self.stop_output.send({"text/plain": ""}, STOP_METADATA)
            self._show_stop()

    def _remove_stop(self) -> None:
        if self.stop_output is not None:
            self.stop_output.send({"text/plain": ""}, STOP_METADATA)
            self.stop_button.close()
            self.stop_output = self.stop_button = None

    def reasoning(self, text: str) -> None:
        first = not self.thinking.shown
        self.thinking.add(text, self.clock())
        self._arrived(first)

    def token(self, text: str) -> None:
        first = self.transcript.length == 0
        self.thinking.end(self.clock())
        self.transcript.add_text(text)
        self.open.add_text(text)
        self._arrived(first)

    def _arrived(self, first: bool) -> None:
        """Text came: the first piece of the thinking or the answer shows at once, later ones
        when the throttle allows."""
        self.notice = self.countdown = None
        if first:
            self._draw()
        else:
            self.dirty = True
            self.tick()

    def status(self, event: StatusEvent) -> None:
        now = self.clock()
        self.countdown = countdown_from(event, now)
        self.notice = None if self.countdown else event.message
        self._draw()

    def tool_call(self, call: ToolCall) -> None:
        self.thinking.end(self.clock())
        self.transcript.add_tool(ToolLine(call))
        self.open.add_tool(ToolLine(call))
        self.notice = f"running {call.name}"
        self._draw()

    def tool_result(self, call: ToolCall, text: str, ok: bool) -> None:
        self.transcript.add_tool(ToolLine(call, text, ok))
        self.open.add_tool(ToolLine(call, text, ok))
        self.notice = WAITING
        self._draw()

    def tick(self) -> None:
        """Flush coalesced text when due; redraw a countdown, or the thinking time, when its
        second changes."""
        now = self.clock()
        countdown_moved = self.countdown is not None and self.countdown.text(now) != self._countdown_text
        # A fixed cadence at any length: only the open tail is redrawn, and it stays small.
        if countdown_moved or (self.dirty and self.throttle.due(now, 0)):
            self._draw()
            return
        if self.live and not self.finished and self.started_at is not None:
            # The status line's clock: tenths while nothing has come, seconds in a pause.
            waiting = not (self.transcript.length or self.thinking.shown)
            step = int((now - self.started_at) * (10 if waiting else 1))
            if step != self._status_step:
                self._status_step = step
                self._draw()
                return
        thinking, frame = self.thinking, self.frame
        if thinking.ended is None and thinking.shown and int(thinking.seconds(now)) != self._second:
            self._second = int(thinking.seconds(now))
            if frame is not None:  # only the title's clock: resending the text would undo the throttle
                frame.retitle(thinking.title(now))
            elif not self.widgets:
                self._draw()

    def finish(self, result: ChatResult, error: BaseException | None = None, note: str | None = None) -> None:
        """The final frame: always drawn, even for an empty, failed or cancelled reply."""
        if self.finished:
            return
        self.finished = True
        body = self.transcript.markdown()
        plain = self.transcript.text()
        notes = [n for n in (status_note(result, error), note) if n]
        markdown_parts, plain_parts = [], []
        # The section stays as the user left it: opened while it streamed, it is open here too.
        opened = self.frame is not None and self.frame.section.selected_index == 0
        thinking = thinking_markdown(result, open_=self.show_thinking or opened)
        if thinking:
            markdown_parts.append(thinking)
            plain_parts.append(thinking_plain(result, full=self.show_thinking))
        if body:
            markdown_parts.append(body)
            plain_parts.append(plain)
        if error is not None:
            markdown_parts.append(error_card_markdown(error, self.model))
            plain_parts.append(error_card_text(error))
        markdown_parts += [f"*({n})*" for n in notes]
        plain_parts += [f"({n})" for n in notes]
        footer = result.footer()
        markdown_parts.append(f"<sub>{html.escape(footer)}</sub>")
        plain_parts.append(f"[{footer}]")
        bundle = {"text/markdown": "\n\n".join(markdown_parts), "text/plain": "\n".join(plain_parts)}
        self.handle.send(bundle, result_metadata(result))
        for handle in self.more:  # the whole reply is in the first output now
            handle.send({"text/plain": ""}, {})
        if self.frame is not None:
            self.frame.close()
            self.frame = None
        self._remove_stop()

    # -- drawing -----------------------------------------------------------------

    def _draw(self) -> None:
        now = self.clock()
        self.dirty = False
        self.throttle.mark(now)
        if not self.live or self.finished:  # nothing may overwrite the final frame
            return
        arrived, self._drawn_length = self.transcript.length - self._drawn_length, self.transcript.length
        self._rate = arrived if self._rate is None else 0.7 * self._rate + 0.3 * arrived
        done = self.open.freeze(freeze_size(self._rate))
        if done is not None:
            self._freeze(done.markdown())
        lines = [self.open.markdown() + CURSOR] if self.open.parts else []
        if self.thinking.shown and not self.widgets and not self.more:
            lines.insert(0, thinking_window(self.thinking, now))
        if self.countdown is not None:
            self._countdown_text = self.countdown.text(now)
            lines.append(f"*{self._countdown_text}*")
        elif self.notice:
            lines.append(f"*{self.notice}*")
        lines.append(f"<sub>{html.escape(self._status_line(now))}</sub>")
        answer = "\n\n".join(lines)
        metadata = LIVE_METADATA
        if self.thinking.shown and self.widgets and not self.more:  # the answer is in the frame
            self._second = int(self.thinking.seconds(now))
            if self.frame is None:
                self.frame = LiveThinkingFrame()
                self.frame.update(self.thinking.title(now), self.thinking, answer)
                self.handle.send(self.frame.bundle(), metadata)
            else:
                self.frame.update(self.thinking.title(now), self.thinking, answer)
                self.handle.updates += 1
            return
        # Live frames carry markdown only: a text/plain copy would double the bytes resent.
        self._send(self._tail_output(), answer)

    def _status_line(self, now: float) -> str:
        """Under a streaming reply: what it is doing, for how long, and about how many tokens so
        far (an estimate: the footer has the server's count). The model is named while it is
        waited for; once text streams, the line is resent with every update of a long reply,
        and the footer names the model, so it is left out."""
        parts = []
        if self.started_at is not None:
            streaming = self.transcript.length or self.thinking.shown
            if not streaming:
                parts.append(self.model)
            parts += ["streaming" if streaming else "waiting", f"{now - self.started_at:.1f} s"]
            if streaming:
                shown = self.transcript.length + self.thinking.length
                parts.append(f"~{round(shown / CHARS_PER_TOKEN):,} tokens")
            if not self.widgets:  # no Stop button: say how to stop
                parts.append(INTERRUPT_TO_STOP)
        return " \N{MIDDLE DOT} ".join(parts or [self.model])

    def _freeze(self, finished: str) -> None:
        """Finished blocks join the output before the tail's (the *warm* one), which is redrawn
        only when blocks join it. Once it holds `warm_chars`, it is left as it is: the tail's
        output takes the finished blocks instead and the tail moves into a new output below.
        So a reply needs few outputs (JupyterLab shows only the first 50 of a cell), and each
        update resends little."""
        if self.warm and self.warm_length + len(finished) <= warm_chars(self.transcript.length):
            self.warm.append(finished)
            self.warm_length += len(finished)
        else:
            self.warm, self.warm_length = [finished], len(finished)
            self.warm_output = self._tail_output()
            self.more.append(Handle(self.handle.display))
        self._send(self.warm_output, "\n\n".join(self.warm))

    def _tail_output(self) -> Handle | None:
        """Where the open tail is drawn: an output, or None for the thinking frame's answer."""
        if self.more:
            return self.more[-1]
        return None if self.frame is not None else self.handle

    def _send(self, output: Handle | None, markdown: str) -> None:
        metadata = LIVE_METADATA
        if output is not None:
            new = not output.shown
            output.send({"text/markdown": markdown}, metadata)
            if new:
                self._keep_stop_last()
        elif self.frame is not None:
            self.frame.update(self.frame.title, self.thinking, markdown)
            self.handle.updates += 1


WARM_CHARS = 10_000
"""How much of the finished reply one output holds while it streams (see `LiveView._freeze`)."""
MAX_LIVE_OUTPUTS = 25


def warm_chars(reply_length: int) -> int:
    """The warm output's size for a reply this long so far: at least `WARM_CHARS`, and enough
    that a reply of any length needs about `MAX_LIVE_OUTPUTS` outputs."""
    return max(WARM_CHARS, reply_length // MAX_LIVE_OUTPUTS)


class TerminalView:
    """Terminal IPython: tokens go to stdout as they arrive; the footer ends the reply."""

    def __init__(self, model: str, *, out: TextIO | None = None, show_thinking: bool = False) -> None:
        self.model = model
        self.out = out or sys.stdout
        self.show_thinking = show_thinking
        """Print the thinking as it streams, dimmed; otherwise one line says the model is thinking."""
        self.finished = False
        self._at_line_start = True
        self._thinking = False

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._at_line_start = text.endswith("\n")

    def _line(self, text: str) -> None:
        self._write(("" if self._at_line_start else "\n") + text + "\n")

    def start(self) -> None:
        pass  # a terminal shows nothing until there is something to show

    def offer_stop(self, stop: Callable[[], object]) -> None:
        """A terminal stops with Ctrl-C."""

    def reasoning(self, text: str) -> None:
        if not self._thinking:
            self._thinking = True
            self._line("[thinking\N{HORIZONTAL ELLIPSIS}]")
            if self.show_thinking:
                self.out.write(DIM)  # faint until the thinking ends
        if self.show_thinking:
            self._write(text)

    def _end_thinking(self) -> None:
        if self._thinking:
            self._thinking = False
            if self.show_thinking:
                self.out.write(UNDIM)
                self._line("[answer]")

    def token(self, text: str) -> None:
        self._end_thinking()
        self._write(text)

    def status(self, event: StatusEvent) -> None:
        self._line(f"[{event.message}]")

    def tool_call(self, call: ToolCall) -> None:
        self._end_thinking()
        self._line(ToolLine(call).text())

    def tool_result(self, call: ToolCall, text: str, ok: bool) -> None:
        self._line(f"  -> {_clip(text)}" if ok else f"  -> failed: {_clip(text)}")

    def tick(self) -> None:
        pass  # status lines are printed once; a terminal is not redrawn

    def finish(self, result: ChatResult, error: BaseException | None = None, note: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        if self._thinking and self.show_thinking:  # the reply ended while still thinking
            self._thinking = False
            self.out.write(UNDIM)
        if error is not None:
            self._line(error_card_text(error))
        for text in (status_note(result, error), note):
            if text:
                self._line(f"({text})")
        self._line(f"[{result.footer()}]")
