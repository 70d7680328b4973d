"""MkDocs hooks: the reference pages are made from the code they describe, at build time, so
they cannot drift from it.

A page holds a marker such as ``<!-- generated: magics -->``; `on_page_markdown` replaces it
with what the matching function below returns: every magic with every option and its help text
(from the magics' own argument parsers), the ``ChatMagics`` traits and the environment variables
nbllm reads, and the error tree (from ``nbllm._exceptions``' docstring). (The compatibility
table is written into its page by ``tests/conformance/table.py`` from the conformance run.)
``tests/test_docs.py``
imports this module to check that the pages cover everything.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"<!-- generated: (\w+) -->")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def parser_table(parser: argparse.ArgumentParser) -> str:
    """One row per option or positional: how to write it, and its help."""
    rows = ["| option | what it does |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            written = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0 and action.metavar:
                written += f" `{action.metavar}`"
            elif action.nargs != 0 and action.choices:
                written += " `" + "|".join(map(str, action.choices)) + "`"
        else:
            written = f"`{action.metavar or action.dest}`"
        help_text = (action.help or "").replace("%%", "%")
        if action.choices and action.option_strings and not action.metavar:
            help_text += f" (one of {', '.join(map(str, action.choices))})"
        rows.append(f"| {written} | {_cell(help_text)} |")
    return "\n".join(rows)


def argument_magics() -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(heading, description, parser) of every magic that parses its line with argparse."""
    from nbllm.magics import provider
    from nbllm.magics.chat import ChatMagics
    from nbllm.magics.replay import RecordingMagics

    found = [
        ("%%chat", ChatMagics.chat),
        ("%llm_history", ChatMagics.llm_history),
        ("%llm_cassette", RecordingMagics.llm_cassette),
        ("%llm_cache", RecordingMagics.llm_cache),
    ]
    found += [
        (fn.parser.prog, fn)
        for name, fn in inspect.getmembers(provider, inspect.isfunction)
        if name.endswith("_args") and hasattr(fn, "parser")
    ]
    # magic_arguments rewrites a function's docstring into its usage; the parser keeps the
    # description as written.
    return [(heading, fn.parser.description or "", fn.parser) for heading, fn in found]


def line_magics() -> list[tuple[str, str, str]]:
    """(heading, usage, description) of the magics that parse their words themselves."""
    from nbllm.magics import logbook, mcp_commands
    from nbllm.magics.chat import ChatMagics
    from nbllm.magics.logbook import LogMagics
    from nbllm.magics.mcp_commands import McpMagics
    from nbllm.magics.panel import PanelMagics

    return [
        ("%llm_mcp", mcp_commands.USAGE, inspect.getdoc(McpMagics.llm_mcp) or ""),
        ("%llm_log", logbook.LOG_USAGE, inspect.getdoc(LogMagics.llm_log) or ""),
        ("%llm_export", logbook.EXPORT_USAGE, inspect.getdoc(LogMagics.llm_export) or ""),
        ("%llm_import", "%llm_import PATH [--as NAME]", inspect.getdoc(LogMagics.llm_import) or ""),
        ("%llm_budget", "%llm_budget [AMOUNT | off]", inspect.getdoc(LogMagics.llm_budget) or ""),
        ("%llm_trace", "%llm_trace [on [--content] | off]", inspect.getdoc(LogMagics.llm_trace) or ""),
        ("%llm_panel", "%llm_panel", inspect.getdoc(PanelMagics.llm_panel) or ""),
        ("%explain / %%explain", "%explain [MODEL] [--cells N]", inspect.getdoc(ChatMagics.explain) or ""),
    ]


def magics() -> str:
    parts = []
    for heading, description, parser in argument_magics():
        usage = " ".join(parser.format_usage().split()).removeprefix("usage: ")
        parts += [
            f"## `{heading}`",
            "",
            _cell(description),
            "",
            "```text",
            usage,
            "```",
            "",
            parser_table(parser),
            "",
        ]
    for heading, usage, description in line_magics():
        parts += [f"## `{heading}`", "", description, "", "```text", usage, "```", ""]
    return "\n".join(parts)


ENVIRONMENT = {
    "NBLLM_CONFIG_DIR": "Where `%llm_provider save` writes and `%load_ext` loads providers "
    "(the platform's config folder otherwise).",
    "NBLLM_LIVE": "`0` renders replies once, finished (headless runs, nbval); the same as "
    "`ChatMagics.display_mode = 'final'`.",
    "NBLLM_WIDGETS": "`0` draws the thinking and progress without ipywidgets (front ends without "
    "a widget manager).",
    "NBLLM_LOG": "Turns the conversation log on at `%load_ext`: a database path, or `1` for the default one.",
    "NBLLM_OTEL": "`1` makes every call an OpenTelemetry span (the `otel` extra).",
    "NBLLM_OTEL_CONTENT": "`1` puts prompt and reply text into the spans too.",
    "NBLLM_CASSETTE_MODE": "Overrides every cassette's mode: `record`, `replay` or `auto`.",
    "NBLLM_TRUST": "The certificates every provider trusts by default: `system` (the OS store, "
    "through truststore) or `certifi`.",
    "NBLLM_<PROVIDER>_API_KEY": "A provider's key, when none is configured "
    "(`NBLLM_OPENROUTER_API_KEY` for provider `openrouter`).",
}
"""Every environment variable nbllm reads, and what it does (tests/test_docs.py checks that
each one the source reads is here)."""


def configuration() -> str:
    from nbllm.magics.chat import ChatMagics

    rows = ["| trait | default | what it does |", "|---|---|---|"]
    for name, trait in sorted(ChatMagics.class_traits(config=True).items()):
        rows.append(f"| `ChatMagics.{name}` | `{trait.default_value!r}` | {_cell(trait.help)} |")
    environment = ["| variable | what it does |", "|---|---|"]
    environment += [f"| `{name}` | {_cell(text)} |" for name, text in ENVIRONMENT.items()]
    return "\n".join(
        [
            "## Traits",
            "",
            "Set with `%config ChatMagics.NAME = VALUE`.",
            "",
            *rows,
            "",
            "## Environment variables",
            "",
            *environment,
            "",
        ]
    )


def errors() -> str:
    import nbllm._exceptions as exceptions

    tree = (exceptions.__doc__ or "").split("\n\n", 2)[2].split('"""')[0]
    return "```text\n" + inspect.cleandoc(tree) + "\n```"


GENERATORS: dict[str, Callable[[], str]] = {
    "magics": magics,
    "configuration": configuration,
    "errors": errors,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda match: GENERATORS[match.group(1)](), markdown)
