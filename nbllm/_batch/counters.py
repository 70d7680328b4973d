"""How far a batch run has got: the counters its progress bar shows and its closing summary.

The run only counts; a view (the widget or the text bar in `nbllm._views.progress`) reads
the counters on its own clock, so a fast run does not pay for a redraw per row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from nbllm._calls.results import format_cost


@dataclass
class Progress:
    """The counters of one run; rows already in the checkpoint are `skipped`, not `done`."""

    total: int
    skipped: int = 0
    done: int = 0
    errors: int = 0
    retries: int = 0
    in_flight: int = 0
    tokens: int = 0
    cost: float | None = None
    stopped: str | None = None
    """Why dispatching stopped early (the Stop button, max_cost, an interrupt), or None."""
    checkpoint: str | None = None
    """The checkpoint file, named so the user can find or delete it."""
    notes: list[str] = field(default_factory=list)
    """What the user should know about how the run went (a limit that could not apply)."""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def finished_rows(self) -> int:
        return self.done + self.errors

    @property
    def to_ask(self) -> int:
        """Rows this run has to ask the model (the total less the checkpoint's)."""
        return self.total - self.skipped

    def add_cost(self, dollars: float | None) -> None:
        if dollars is not None:
            self.cost = (self.cost or 0.0) + dollars

    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before the first row finishes)."""
        if not self.finished_rows or self.finished is not None:
            return None
        pace = self.elapsed_s() / self.finished_rows
        return pace * (self.to_ask - self.finished_rows)

    def line(self) -> str:
        """One line of counters, as the bar shows them."""
        parts = [f"{self.finished_rows}/{self.to_ask} rows", f"{self.errors} errors"]
        if self.retries:
            parts.append(f"{self.retries} retries")
        if self.in_flight:
            parts.append(f"{self.in_flight} in flight")
        parts.append(f"{self.tokens:,} tokens")
        if self.cost is not None:
            parts.append(format_cost(self.cost))
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {eta:.0f} s")
        return " · ".join(parts)

    def summary(self) -> str:
        """What the run did, for the end of the output: rows, skips, failures, tokens, cost, time."""
        text = f"{self.done + self.skipped} of {self.total} rows done in {self.elapsed_s():.1f} s"
        if self.skipped:
            text += f" ({self.skipped} from the checkpoint, not asked again)"
        if self.errors:
            # A rerun asks only the failed rows again when a checkpoint kept the others.
            again = "rerun to retry them" if self.checkpoint else "a rerun asks every row again"
            text += f"; {self.errors} failed (status 'error'; {again})"
        not_run = self.to_ask - self.finished_rows
        if not_run:
            text += f"; {not_run} not run"
        text += f"; {self.tokens:,} tokens"
        if self.cost is not None:
            text += f", {format_cost(self.cost)}"
        if self.stopped:
            text += f". Stopped: {self.stopped}"
        if self.checkpoint:
            text += f". Checkpoint: {self.checkpoint}"
        return text + "." + "".join(f" Note: {note}." for note in self.notes)


class ProgressView(Protocol):
    """What shows a run's progress; `update` is called a few times a second at most."""

    def update(self, progress: Progress) -> None: ...

    def finish(self, progress: Progress) -> None: ...
