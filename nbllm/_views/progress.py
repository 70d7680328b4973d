"""A batch run's progress, as the user sees it: a widget bar with a Stop button in a notebook,
a text bar in a terminal. Both read the run's counters (`nbllm._batch.progress.Progress`)
when asked, a few times a second at most, and end with the run's summary."""

from __future__ import annotations

import contextlib
import html
import sys
from collections.abc import Callable
from typing import Any, TextIO

from nbllm._batch.progress import Progress

TEXT_BAR_WIDTH = 30
UI_EVENTS_PER_POLL = 10
"""Front-end messages handled per redraw of the bar while its cell is busy."""


def in_notebook() -> bool:
    """Whether a notebook front end draws this kernel's output (widgets can show)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class WidgetProgress:
    """An ipywidgets bar, the counters under it, and a Stop button that stops dispatching."""

    def __init__(self, title: str, stop: Callable[[], None]) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="", bar_style="info")
        self.label = widgets.HTML()
        self.stop_button = widgets.Button(
            description="Stop", button_style="danger", tooltip="Stop sending rows"
        )
        self.stop_button.add_class("nbllm-map-stop")

        def on_stop(_: Any) -> None:
            stop()
            self.stop_button.disabled = True
            self.stop_button.description = "Stopping"

        self.stop_button.on_click(on_stop)
        self.box = widgets.VBox(
            [
                widgets.HTML(f"<b>{html.escape(title)}</b>"),
                widgets.HBox([self.bar, self.stop_button]),
                self.label,
            ]
        )
        self.box.add_class("nbllm-map")
        display(self.box)
        self._events: Callable[[int], Any] | None = None
        self._polling: contextlib.AbstractContextManager[Any] | None = None

    def __enter__(self) -> WidgetProgress:
        """While inside, `poll` can handle widget messages in a busy cell (jupyter-ui-poll)."""
        try:
            from jupyter_ui_poll import ui_events
        except ImportError:
            return self
        self._polling = ui_events()
        self._events = self._polling.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._polling is not None:
            self._polling.__exit__(*exc)
            self._polling = self._events = None

    def poll(self) -> None:
        """Handle the front end's pending widget messages (a Stop click) while the cell that
        runs the batch is still busy, which would otherwise hold them until it ends."""
        if self._events is None:
            return
        with contextlib.suppress(Exception):  # never let the bar's plumbing break the run
            self._events(UI_EVENTS_PER_POLL)

    def update(self, progress: Progress) -> None:
        self.bar.max = max(progress.to_ask, 1)
        self.bar.value = progress.finished_rows
        self.bar.bar_style = "warning" if progress.errors else "info"
        self.label.value = html.escape(progress.line())

    def finish(self, progress: Progress) -> None:
        self.update(progress)
        self.bar.bar_style = "success" if not (progress.errors or progress.stopped) else "warning"
        self.stop_button.disabled = True
        self.stop_button.description = "Done" if not progress.stopped else "Stopped"
        self.label.value = html.escape(progress.summary())


class _NoEvents:
    """No widget messages to handle (a terminal, or no bar)."""

    def __enter__(self) -> _NoEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def poll(self) -> None:
        pass


class TextProgress(_NoEvents):
    """A one-line bar redrawn in place (``\\r``), then the summary on its own line."""

    def __init__(self, title: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self._last = ""

    def update(self, progress: Progress) -> None:
        filled = TEXT_BAR_WIDTH * progress.finished_rows // max(progress.to_ask, 1)
        line = f"{self.title} [{'#' * filled}{'.' * (TEXT_BAR_WIDTH - filled)}] {progress.line()}"
        if line != self._last:
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line

    def finish(self, progress: Progress) -> None:
        self.update(progress)
        self.stream.write("\n" + progress.summary() + "\n")
        self.stream.flush()


class QuietProgress(_NoEvents):
    """No bar (``progress=False``): only the counters on the result."""

    def update(self, progress: Progress) -> None:
        pass

    def finish(self, progress: Progress) -> None:
        pass


def progress_view(
    title: str, stop: Callable[[], None], shown: bool = True
) -> WidgetProgress | TextProgress | QuietProgress:
    """The bar that suits where this runs."""
    if not shown:
        return QuietProgress()
    if in_notebook():
        return WidgetProgress(title, stop)
    return TextProgress(title)
