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
    parser = func.parser  # type: ignore[attr-defined]
    # No abbreviations: `--api anthropic` must not quietly become `--api-version anthropic`.
    parser.allow_abbrev = False
    try:
        return parser.parse_args(words)
    except UsageError as exc:  # argparse quotes what it could not use, keys included
        raise UsageError(mask_secrets(str(exc), words)) from None


_KEY_PREFIXES = ("sk-", "sk_", "pk-", "rk-", "gsk_", "hf_", "xai-", "ghp_", "github_pat_", "AIza", "AKIA")


def looks_secret(text: str) -> bool:
    """Whether `text` could be a key or token: a known key prefix, ``Bearer``, or a long run of
    letters and digits together."""
    if "bearer " in text.lower() or text.startswith(_KEY_PREFIXES):
        return True
    return len(text) >= 16 and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def mask_secrets(message: str, words: list[str]) -> str:
    """`message` with every word of the line that could be a secret (or the value of an
    ``--option=value`` word that could) replaced by ``****``."""
    for word in sorted(words, key=len, reverse=True):
        option, equals, value = word.partition("=")
        if equals and option.startswith("-") and looks_secret(value):
            message = message.replace(value, "****")
        elif looks_secret(word):
            message = message.replace(word, "****")
    return message


def warn(message: str) -> None:
    """A warning the notebook shows every time (the warnings module would show it once)."""
    print(f"nbllm warning: {message}", file=sys.stderr)
