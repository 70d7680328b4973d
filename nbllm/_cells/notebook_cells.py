"""The cells the user ran, as context: ``%%chat --cells N``, ``{Err[n]}`` and ``%explain``.

A ``post_run_cell`` hook (`CellLog.record`, registered by ``%load_ext nbllm``) keeps each
cell's number, code, the value it ended with (IPython's ``Out`` holds it anyway) and its error
as text: a few references per cell, nothing computed. Summaries are made only when a prompt
asks for them, by the same rules as a ``{placeholder}`` (`nbllm._cells.summaries`).

`explain_prompt` builds what ``%explain`` sends about the last exception: the failing cell's
code, the exception, the traceback's frames with their source lines (frames inside installed
packages and the standard library collapsed), and the failing frame's local variables,
summarised.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from nbllm._constants import CHARS_PER_TOKEN  # not _calls.tokens: %load_ext loads this module
from nbllm._session import session

KEPT_CELLS = 200
CODE_CHARS = 4_000
"""A cell's code longer than this is cut in the middle (a prompt wants the gist, not 10 pages)."""
OUTPUT_TOKENS = 300
"""About how many tokens one cell's output may take in --cells."""
LOCAL_TOKENS = 120
"""About how many tokens one local variable's summary may take in %explain."""
MAX_LOCALS = 20


class RanCell:
    """One cell the user ran: its number, code, the value it ended with (its Out) and the
    ``Type: message`` of the exception it raised. A plain class: this module loads with
    ``%load_ext``, where every millisecond counts."""

    __slots__ = ("code", "error", "number", "value")

    def __init__(self, number: int | None, code: str, value: Any = None, error: str | None = None) -> None:
        self.number, self.code, self.value, self.error = number, code, value, error


class CellLog:
    """The recent cells of this kernel, newest last (see the module docstring)."""

    def __init__(self, keep: int = KEPT_CELLS) -> None:
        self.cells: deque[RanCell] = deque(maxlen=keep)
        self.errors: dict[int, str] = {}
        """Cell number to its error, as ``Err`` in the notebook: ``{Err[3]}`` in a prompt."""
        self.last_exception: BaseException | None = None
        self.last_failed: RanCell | None = None

    def record(self, result: Any) -> None:
        """IPython's ``post_run_cell`` event: `result` is its ``ExecutionResult``."""
        info = getattr(result, "info", None)
        code = str(getattr(info, "raw_cell", "") or "").strip()
        if not code:
            return
        number = getattr(result, "execution_count", None)
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        error = None if exc is None else error_text(exc)
        self.cells.append(RanCell(number, code, getattr(result, "result", None), error))
        if error is not None and number is not None:
            self.errors[number] = error
        # What %explain explains: the last exception of the user's code, not a magic's refusal
        # (a failed %explain must not make the next one explain itself).
        if exc is not None and type(exc).__name__ != "UsageError":
            self.last_exception, self.last_failed = exc, self.cells[-1]

    def recent(self, count: int) -> list[RanCell]:
        return list(self.cells)[-count:] if count > 0 else []

    def context(self, count: int, budget_tokens: int) -> str:
        """The last `count` cells as a prompt section, oldest dropped first to fit the budget."""
        blocks = [cell_block(cell) for cell in self.recent(count)]
        budget = int(budget_tokens * CHARS_PER_TOKEN)
        dropped = 0
        while blocks and sum(map(len, blocks)) > budget and len(blocks) > 1:
            blocks.pop(0)
            dropped += 1
        if not blocks:
            return ""
        head = f"The last {len(blocks)} cell{'s' if len(blocks) != 1 else ''} the user ran"
        if dropped:
            head += f" ({dropped} older one{'s' if dropped != 1 else ''} left out to fit)"
        return head + ":\n\n" + "\n\n".join(blocks)


def error_text(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _cut(code: str, limit: int = CODE_CHARS) -> str:
    if len(code) <= limit:
        return code
    keep = limit // 2
    gap = f"# \N{HORIZONTAL ELLIPSIS} {len(code) - 2 * keep:,} characters left out"
    return f"{code[:keep]}\n{gap}\n{code[-keep:]}"


def cell_block(cell: RanCell) -> str:
    label = f"In [{cell.number}]" if cell.number is not None else "A cell"
    lines = [f"{label}:", "```python", _cut(cell.code), "```"]
    if cell.error is not None:
        lines.append(f"It raised {cell.error}")
    elif cell.value is not None:
        from nbllm._cells.summaries import describe

        shown = describe(cell.value, f"Out[{cell.number}]", "sample", OUTPUT_TOKENS).text
        lines.append(f"Out [{cell.number}]:\n{shown}")
    return "\n".join(lines)


# -- %explain ---------------------------------------------------------------------------------


@functools.cache
def _library_roots() -> tuple[str, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple({paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)})


def is_library(filename: str) -> bool:
    """A frame in an installed package or the standard library (collapsed in %explain)."""
    return filename.startswith(_library_roots()) or "site-packages" in filename or "dist-packages" in filename


def explain_prompt(
    exc: BaseException,
    failing_code: str | None,
    question: str | None = None,
    *,
    cell_name: Any = None,
    level: Any = "sample",
) -> str:
    """What ``%explain`` asks about `exc` (see the module docstring). `cell_name` maps a cell's
    compiled filename to its label (``In [5]``), as IPython names cells."""
    import traceback

    tb: TracebackType | None = exc.__traceback__
    frames = traceback.extract_tb(tb)
    lines: list[str] = []
    collapsed = 0
    for frame in frames:
        if is_library(frame.filename):
            collapsed += 1
            continue
        if collapsed:
            lines.append(f"  [{collapsed} frame{'s' if collapsed != 1 else ''} inside libraries]")
            collapsed = 0
        where = cell_name(frame.filename) if cell_name else None
        place = where or frame.filename
        lines.append(f"  {place}, line {frame.lineno}, in {frame.name}: {(frame.line or '').strip()}")
    if collapsed:
        lines.append(f"  [{collapsed} frame{'s' if collapsed != 1 else ''} inside libraries]")
    failing = _last_user_frame(tb)
    sections = [
        question.strip()
        if question and question.strip()
        else "Explain what caused this error and how to fix it.",
    ]
    if failing_code:
        sections.append(f"The cell that failed:\n```python\n{_cut(failing_code)}\n```")
    sections.append(f"The error: {error_text(exc)}")
    if lines:
        sections.append("Traceback, most recent call last:\n" + "\n".join(lines))
    if failing is not None:
        summaries = _locals(failing.tb_frame.f_locals, level)
        if summaries:
            sections.append(f"Local variables of {failing.tb_frame.f_code.co_name}:\n" + "\n".join(summaries))
    return "\n\n".join(sections)


def _last_user_frame(tb: TracebackType | None) -> TracebackType | None:
    last = None
    while tb is not None:
        if not is_library(tb.tb_frame.f_code.co_filename):
            last = tb
        tb = tb.tb_next
    return last


SHELL_NAMES = frozenset({"In", "Out", "Err", "exit", "quit", "get_ipython"})
"""Names IPython and nbllm put in the namespace: not the user's variables."""


def is_user_variable(name: str, value: Any) -> bool:
    """A variable worth showing a model: not private, not the shell's, not a module, function
    or class (those are code, not data)."""
    import inspect

    if name.startswith("_") or name in SHELL_NAMES:
        return False
    return not (inspect.ismodule(value) or inspect.isroutine(value) or inspect.isclass(value))


def _locals(variables: dict[str, Any], level: Any = "sample") -> list[str]:
    from nbllm._cells.summaries import describe

    shown = []
    for name, value in variables.items():
        if not is_user_variable(name, value):
            continue
        text = describe(value, name, level, LOCAL_TOKENS).text
        limit = int(LOCAL_TOKENS * CHARS_PER_TOKEN)
        if len(text) > limit:
            text = text[:limit] + "\N{HORIZONTAL ELLIPSIS}"
        shown.append(f"- {name} ({type(value).__name__}): {text}")
        if len(shown) == MAX_LOCALS:
            break
    return shown


def get_cell_log() -> CellLog:
    """The session's log of ran cells (filled once ``%load_ext nbllm`` registered its hook)."""
    return session().part(CellLog)


def record_cell(result: Any) -> None:
    """The ``post_run_cell`` hook: into whichever session is running."""
    get_cell_log().record(result)


class Errors:
    """``Err`` in the notebook: cell number to the error it raised (``{Err[3]}``), read-only,
    always the running session's (a mapping's methods, without the ABC's import-time cost)."""

    def __getitem__(self, number: int) -> str:
        return get_cell_log().errors[number]

    def __iter__(self) -> Iterator[int]:
        return iter(get_cell_log().errors)

    def __len__(self) -> int:
        return len(get_cell_log().errors)

    def __contains__(self, number: object) -> bool:
        return number in get_cell_log().errors

    def get(self, number: int, default: str | None = None) -> str | None:
        return get_cell_log().errors.get(number, default)

    def keys(self) -> Any:
        return get_cell_log().errors.keys()

    def values(self) -> Any:
        return get_cell_log().errors.values()

    def items(self) -> Any:
        return get_cell_log().errors.items()

    def __repr__(self) -> str:
        return repr(get_cell_log().errors)
