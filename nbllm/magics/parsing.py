"""What every magic shares: splitting its line into arguments, turning nbllm errors into
the plain `UsageError` IPython prints without a traceback, and warnings shown every time."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from IPython.core.error import UsageError

from nbllm._exceptions import ConfigError, NbllmError
from nbllm._providers.secret_text import mask_secrets


@contextmanager
def usage_errors(line: str = "") -> Iterator[None]:
    """Turn nbllm errors into the plain `UsageError` IPython prints without a traceback, with
    any word of the magic's `line` that could be a key masked (messages quote their input)."""
    try:
        yield
    except NbllmError as exc:
        raise UsageError(mask_secrets(str(exc), line.split())) from None
    except UsageError as exc:
        raise UsageError(mask_secrets(str(exc), line.split())) from None


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


def warn(message: str) -> None:
    """A warning the notebook shows every time (the warnings module would show it once)."""
    print(f"nbllm warning: {message}", file=sys.stderr)


def parse_headers(items: list[str]) -> dict[str, str]:
    """``--header NAME=VALUE`` items (of a provider or an MCP server) as a mapping."""
    headers = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # The text is not echoed: a mistyped header may well hold a token.
            raise ConfigError("each --header should be NAME=VALUE, e.g. HTTP-Referer=https://me.example")
        headers[name.strip()] = value
    return headers


_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")


def expand_line(shell: Any, line: str) -> str:
    """IPython's ``{expr}`` and ``$name`` expansion of a magic line, except ``${VAR}``, which
    means the environment's variable, read by nbllm when it is used (a Python variable of the
    same name must not put its value there: a key, into a saved file)."""
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        kept.append(match.group())
        return f"\x00{len(kept) - 1}\x00"

    protected = _ENV_REFERENCE.sub(keep, line)
    expanded = shell.var_expand(protected) if shell is not None else protected
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], expanded)
