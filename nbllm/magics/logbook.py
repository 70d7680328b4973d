"""The record of conversations: ``%llm_log``, ``%llm_export``, ``%llm_import``, ``%llm_budget``
and ``%llm_trace`` (see `nbllm._log` and `nbllm._calls.budget`).

%llm_log [on [PATH] | off | search TEXT [-n N] | stats [--since 30d] | prune --older-than 90d]
%llm_export [CONVERSATION] --to md|json|ipynb [PATH]
%llm_import PATH [--as NAME]
%llm_budget [AMOUNT | off]
%llm_trace [on [--content] | off]
"""

from __future__ import annotations

import html
import shlex
from datetime import datetime, timezone
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import HTML, display

from nbllm._exceptions import NbllmError

LOG_USAGE = "%llm_log [on [PATH] | off | search TEXT [-n N] | stats [--since 30d] | prune --older-than 90d]"
EXPORT_USAGE = "%llm_export [CONVERSATION] --to md|json|ipynb [PATH]"
SHOWN_ROWS = 20


def _option(words: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` from `words`; the value, or None."""
    if name not in words:
        return None
    at = words.index(name)
    if at + 1 >= len(words):
        raise UsageError(f"{name} needs a value")
    value = words[at + 1]
    del words[at : at + 2]
    return value


def _table(rows: list[dict[str, Any]], columns: list[str]) -> HTML:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return HTML(f"<table><tr>{head}</tr>{body}</table>")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and len(value) > 19 and value[4:5] == "-" and value[10:11] == "T":
        return value[:19].replace("T", " ") + " UTC"  # a logged time, to the second
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 120 else text[:119] + "\N{HORIZONTAL ELLIPSIS}"


@magics_class
class LogMagics(Magics):
    @line_magic
    def llm_log(self, line: str) -> None:
        """The opt-in conversation log: on, off, search, stats, prune (no argument: its state)."""
        from nbllm._log import database
        from nbllm._log.writer import check_path, get_log

        words = shlex.split(line)
        log = get_log()
        action, rest = (words[0], words[1:]) if words else ("", [])
        try:
            if action == "":
                print(log.status())
            elif action == "on":
                if len(rest) > 1:
                    raise UsageError(f"%llm_log on takes one PATH: {LOG_USAGE}")
                path = log.turn_on(check_path(rest[0]) if rest else None)
                print(f"Logging every call to {path}. Prompts and replies are kept, keys never are.")
            elif action == "off":
                log.turn_off()
                print("The log is off; what was logged stays (nbllm.logs() reads it).")
            elif action == "search":
                limit = int(_option(rest, "-n") or SHOWN_ROWS)
                if not rest:
                    raise UsageError("search for some words: %llm_log search TEXT")
                connection = log.connection()
                try:
                    rows = database.query(connection, search=" ".join(rest), limit=limit)
                finally:
                    connection.close()
                print(f"{len(rows)} call(s) match {' '.join(rest)!r}")
                if rows:
                    display(_table(rows, ["time", "model", "status", "conversation", "reply"]))
            elif action == "stats":
                since = _option(rest, "--since")
                connection = log.connection()
                try:
                    rows = database.stats(
                        connection, datetime.now(timezone.utc) - database.age(since) if since else None
                    )
                finally:
                    connection.close()
                if not rows:
                    print("No calls logged yet.")
                else:
                    columns = [
                        "day",
                        "model",
                        "calls",
                        "errors",
                        "prompt_tokens",
                        "completion_tokens",
                        "cost",
                    ]
                    display(_table(rows, columns))
            elif action == "prune":
                older = _option(rest, "--older-than")
                if older is None or rest:
                    raise UsageError("say what to prune: %llm_log prune --older-than 90d")
                connection = log.connection()
                try:
                    removed = database.prune(connection, datetime.now(timezone.utc) - database.age(older))
                finally:
                    connection.close()
                print(f"Removed {removed} call(s) older than {older}, and the messages only they held.")
            else:
                raise UsageError(f"unknown %llm_log command {action!r}: {LOG_USAGE}")
        except NbllmError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def llm_export(self, line: str) -> None:
        """Write a conversation as Markdown, JSON (to resend or import) or a notebook."""
        from nbllm._log.export import export

        words = shlex.split(line)
        to = _option(words, "--to")
        if to is None or len(words) > 2:
            raise UsageError(f"say the format: {EXPORT_USAGE}")
        conversation = words[0] if words else None
        path = words[1] if len(words) > 1 else None
        try:
            written = export(conversation, to=to, path=path)
        except NbllmError as exc:
            raise UsageError(str(exc)) from None
        print(f"Exported conversation {conversation or 'default'!r} to {written}")

    @line_magic
    def llm_import(self, line: str) -> None:
        """Restore a conversation from a JSON export (%llm_import PATH [--as NAME])."""
        from nbllm._log.export import import_conversation

        words = shlex.split(line)
        name = _option(words, "--as")
        if len(words) != 1:
            raise UsageError("%llm_import PATH [--as NAME]")
        try:
            restored = import_conversation(words[0], name)
        except NbllmError as exc:
            raise UsageError(str(exc)) from None
        print(f"Restored conversation {restored!r}; %%chat -c {restored} continues it.")

    @line_magic
    def llm_budget(self, line: str) -> None:
        """Set the session's budget (%llm_budget 2.00), lift it (off), or show it."""
        from nbllm._calls.budget import get_budget

        budget = get_budget()
        text = line.strip()
        try:
            if text == "off":
                budget.set(None)
            elif text:
                try:
                    amount = float(text.lstrip("$"))
                except ValueError:
                    raise UsageError(
                        f"a budget is an amount, such as %llm_budget 2.00, not {text!r}"
                    ) from None
                budget.set(amount)
        except NbllmError as exc:
            raise UsageError(str(exc)) from None
        print(budget.summary())

    @line_magic
    def llm_trace(self, line: str) -> None:
        """OpenTelemetry spans for every call: on [--content] (prompt and reply text too), off."""
        from nbllm._log.traces import get_traces

        words = line.split()
        traces = get_traces()
        try:
            if words[:1] == ["on"] and set(words[1:]) <= {"--content"}:
                traces.turn_on(content="--content" in words)
                with_text = " with prompt and reply text" if traces.content else " (no prompt or reply text)"
                print(f"Each call is an OpenTelemetry span{with_text}.")
            elif words == ["off"]:
                traces.turn_off()
                print("Traces are off.")
            elif not words:
                print(f"Traces are {'on' if traces.on else 'off'}.")
            else:
                raise UsageError("%llm_trace [on [--content] | off]")
        except NbllmError as exc:
            raise UsageError(str(exc)) from None
