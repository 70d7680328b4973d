"""What every magic shares: splitting its line into arguments, turning nbllm errors into
the plain `UsageError` IPython prints without a traceback, and warnings shown every time."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from IPython.core.error import UsageError

from nbllm._exceptions import NbllmError


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn nbllm errors into the plain `UsageError` IPython prints without a traceback."""
    try:
        yield
    except NbllmError as exc:
        raise UsageError(str(exc)) from None


def parse_line(func: Callable[..., Any], line: str) -> Any:
    """Parse a magic's line with shell quoting (IPython's own splitter keeps the quotes, so
    ``--system "Be brief."`` would arrive with them)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot split the line: {exc}; check its quotes") from None
    return func.parser.parse_args(words)  # type: ignore[attr-defined]


def warn(message: str) -> None:
    """A warning the notebook shows every time (the warnings module would show it once)."""
    print(f"nbllm warning: {message}", file=sys.stderr)
