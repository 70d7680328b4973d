"""A batch run's progress, as the user sees it: a widget bar with a Stop button in a notebook,
a text bar in a terminal (and in a notebook with ``$NBLLM_WIDGETS=0``). Both read the run's
counters (`nbllm._batch.counters.Progress`) when asked, a few times a second at most, and end
with the run's summary."""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from nbllm._batch.counters import Progress
from nbllm._constants import PROGRESS_TICK_S, WIDGETS_ENV
from nbllm._views.reply import Throttle

TEXT_BAR_WIDTH = 30
INTERRUPT_HINT = "to stop: interrupt the kernel (■); the rows done are kept"
"""Shown instead of a Stop button where the kernel cannot hear one: a plain (not awaited)
cell keeps the kernel's event loop busy, so a click would wait until the run ended."""


def widgets_enabled() -> bool:
    """Whether widgets may be drawn at all: not when ``$NBLLM_WIDGETS`` is ``0`` (a front end
    without a widget manager, such as nbconvert, some VS Code set-ups or Colab without its
    custom widget manager, shows a widget as a line of text)."""
    return os.environ.get(WIDGETS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def in_notebook() -> bool:
    """Whether a notebook front end draws this kernel's output (widgets can show)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class WidgetProgress:
    """An ipywidgets bar, the counters under it, and a Stop button that stops dispatching (or,
    where the kernel could not hear the button, a word on the interrupt instead)."""

    def __init__(self, title: str, stop: Callable[[], None] | None) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="", bar_style="info")
        self.label = widgets.HTML()
        heading = f"<b>{html.escape(title)}</b>"
        row: list[Any] = [self.bar]
        self.stop_button: Any = None
        if stop is None:
            heading += f" <i>({html.escape(INTERRUPT_HINT)})</i>"
        else:
            button = widgets.Button(description="Stop", button_style="danger", tooltip="Stop sending rows")
            button.add_class("nbllm-map-stop")

            def on_stop(_: Any) -> None:
                stop()
                button.disabled = True
                button.description = "Stopping"

            button.on_click(on_stop)
            row.append(button)
            self.stop_button = button
        self.box = widgets.VBox([widgets.HTML(heading), widgets.HBox(row), self.label])
        self.box.add_class("nbllm-map")
        self._redraw = Throttle(PROGRESS_TICK_S, stretch_chars=0)
        display(self.box)

    def update(self, progress: Progress) -> None:
        if not self._redraw.take(time.monotonic()):
            return
        self.bar.max = max(progress.to_ask, 1)
        self.bar.value = progress.finished_rows
        self.bar.bar_style = "warning" if progress.errors else "info"
        self.label.value = html.escape(progress.line())

    def finish(self, progress: Progress) -> None:
        self._redraw.reset()
        self.update(progress)
        self.bar.bar_style = "success" if not (progress.errors or progress.stopped) else "warning"
        if self.stop_button is not None:  # a finished run is not an alarm: no red button
            self.stop_button.disabled = True
            self.stop_button.button_style = ""
            self.stop_button.description = "\N{CHECK MARK} Done" if not progress.stopped else "Stopped"
        self.label.value = html.escape(progress.summary())


class TextProgress:
    """A one-line bar redrawn in place (``\\r``), then the summary on its own line."""

    def __init__(self, title: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self._last = ""
        self._redraw = Throttle(PROGRESS_TICK_S, stretch_chars=0)

    def update(self, progress: Progress) -> None:
        if not self._redraw.take(time.monotonic()):
            return
        filled = TEXT_BAR_WIDTH * progress.finished_rows // max(progress.to_ask, 1)
        line = f"{self.title} [{'#' * filled}{'.' * (TEXT_BAR_WIDTH - filled)}] {progress.line()}"
        if line != self._last:
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line

    def finish(self, progress: Progress) -> None:
        self._redraw.reset()
        self.update(progress)
        self.stream.write("\n" + progress.summary() + "\n")
        self.stream.flush()


class QuietProgress:
    """No bar (``progress=False``): only the counters on the result."""

    def update(self, progress: Progress) -> None:
        pass

    def finish(self, progress: Progress) -> None:
        pass


def progress_view(
    title: str, stop: Callable[[], None] | None, shown: bool = True
) -> WidgetProgress | TextProgress | QuietProgress:
    """The bar that suits where this runs; `stop` None where a Stop button could not be heard
    (a plain cell, see `INTERRUPT_HINT`)."""
    if not shown:
        return QuietProgress()
    if in_notebook() and widgets_enabled():
        return WidgetProgress(title, stop)
    return TextProgress(title)
