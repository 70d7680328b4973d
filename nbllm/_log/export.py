"""Exporting a conversation (``%llm_export``, `nbllm.export`) and importing one (``%llm_import``).

A conversation is taken from the session when it has turns there, else from the log (its newest
call holds the whole conversation: the messages it sent, then its reply). It is written as

- Markdown: the turns, for reading;
- JSON: ``{"nbllm": "conversation", "version": 1, "conversation", "model", "messages"}``, the
  messages in the OpenAI chat shape nbllm sends (resend them with ``nbllm.chat(messages)``);
  importing it restores the conversation, so the next ``%%chat -c NAME`` sends the same request;
- a notebook: ``%load_ext nbllm``, then one ``%%chat MODEL -c NAME --no-interp`` cell per user
  turn (the prompt as written, never interpolated again) followed by the reply as Markdown.

Log rows (a list of dicts or a DataFrame from `nbllm.logs`) export as Markdown or JSON.
Everything written was masked when it was logged, or is masked here (session conversations).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nbllm._batch.rows import read_rows
from nbllm._calls.history import get_history
from nbllm._calls.tokens import Message
from nbllm._cells.conversation import get_conversations
from nbllm._exceptions import LogError
from nbllm._log import database
from nbllm._log.writer import get_log
from nbllm._providers.secret_registry import session_secrets
from nbllm._providers.secret_text import mask_json

FORMATS = ("md", "json", "ipynb")
EXPORT_KIND = "conversation"
EXPORT_VERSION = 1


def conversation_messages(name: str) -> tuple[list[Message], str | None]:
    """The conversation's messages (system first) and the model that last answered in it."""
    model = next(
        (r.model for r in reversed(get_history().records()) if r.conversation == name and r.kind == "chat"),
        None,
    )
    conversations = get_conversations()
    if name in conversations.names() and conversations.get(name).turns:  # get() would create it
        return mask_json(conversations.get(name).messages(), session_secrets()), model
    log = get_log()
    try:
        connection = log.connection()
    except LogError:
        connection = None
    if connection is not None:
        try:
            rows = database.query(connection, conversation=name, status="ok", limit=1)
            if rows:
                row = rows[0]
                messages = database.messages_of(connection, row["id"])
                reply: Message = {"role": "assistant", "content": row["reply"] or ""}
                if row["tool_calls"]:
                    reply["tool_calls"] = json.loads(row["tool_calls"])
                return [*messages, reply], model or row["model"]
        finally:
            connection.close()
    raise LogError(
        f"no conversation named {name!r} in this session or the log",
        hint=f"the session has {', '.join(get_conversations().names()) or 'none'}; "
        "%llm_log search TEXT finds logged calls",
    )


def export(
    conversation: str | None = None,
    *,
    to: str = "md",
    path: Path | str | None = None,
    rows: Any = None,
) -> Path:
    """Write a conversation (or log `rows`) as `to` (md, json or ipynb) to `path` (default
    ``NAME.FORMAT`` in the working folder); returns the path written."""
    if to not in FORMATS:
        raise LogError(f"export to md, json or ipynb, not {to!r}")
    if rows is not None:
        if to == "ipynb":
            raise LogError("log rows export as md or json; a notebook is made from one conversation")
        records = read_rows(rows).records
        text = _rows_markdown(records) if to == "md" else json.dumps(records, indent=1, default=str)
        return _write(Path(path or f"nbllm-log.{to}"), text)
    name = conversation or "default"
    messages, model = conversation_messages(name)
    if to == "md":
        text = _markdown(name, messages, model)
    elif to == "json":
        document = {
            "nbllm": EXPORT_KIND,
            "version": EXPORT_VERSION,
            "conversation": name,
            "model": model,
            "exported_at": datetime.now(timezone.utc).isoformat(),
            "messages": messages,
        }
        text = json.dumps(document, indent=1, ensure_ascii=False)
    else:
        text = json.dumps(_notebook(name, messages, model), indent=1, ensure_ascii=False)
    return _write(Path(path or f"{name}.{to}"), text)


def import_conversation(path: Path | str, name: str | None = None) -> str:
    """Restore a JSON export as a session conversation (named as exported, or `name`);
    returns its name."""
    source = Path(path).expanduser()
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LogError(f"cannot read {source} as a JSON export: {exc}") from None
    if not isinstance(document, dict) or document.get("nbllm") != EXPORT_KIND:
        raise LogError(f"{source} is not an nbllm conversation export (%llm_export NAME --to json)")
    messages = document.get("messages")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict)
        and m.get("role") in ("system", "user", "assistant", "tool")
        and isinstance(m.get("content"), (str, list, type(None)))
        for m in messages
    ):
        raise LogError(
            f"{source}: 'messages' should be a list of chat messages with roles and text (or parts) "
            "as content"
        )
    target = name or str(document.get("conversation") or "default")
    conversation = get_conversations().get(target)
    conversation.reset()
    for message in messages:
        if message["role"] == "system" and not conversation.turns:
            conversation.system = str(message.get("content") or "")
        elif message["role"] == "user" or not conversation.turns:
            conversation.turns.append([dict(message)])
        else:
            conversation.turns[-1].append(dict(message))
    return target


def _text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append(f"[{part.get('type', 'part')}]")
        return "\n".join(parts)
    return ""


def _markdown(name: str, messages: Sequence[Message], model: str | None) -> str:
    lines = [f"# Conversation {name}", ""]
    if model:
        lines += [f"Model: `{model}`", ""]
    for message in messages:
        role = message.get("role")
        if role == "tool":
            lines += [
                f"**tool result** (`{message.get('tool_call_id', '')}`):",
                "",
                "```",
                _text(message),
                "```",
                "",
            ]
            continue
        lines += [f"## {str(role).capitalize()}", "", _text(message), ""]
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            lines += [f"*asked for* `{function.get('name')}({function.get('arguments', '')})`", ""]
    return "\n".join(lines)


def _notebook(name: str, messages: Sequence[Message], model: str | None) -> dict[str, Any]:
    cells: list[dict[str, Any]] = [
        _cell(
            "markdown", f"# Conversation {name}\n\nExported by nbllm from `{model or 'the default model'}`."
        ),
        _cell("code", "%load_ext nbllm"),
    ]
    system = next((_text(m) for m in messages if m.get("role") == "system"), None)
    first = True
    for message in messages:
        role = message.get("role")
        if role == "user":
            line = ["%%chat", *([model] if model else []), "-c", name, "--no-interp"]
            if first:
                line.append("--new")
                if system:
                    line += ["--system", " ".join(system.split())]
            first = False
            cells.append(_cell("code", " ".join(shlex.quote(w) for w in line) + "\n" + _text(message)))
        elif role == "assistant" and _text(message):
            cells.append(_cell("markdown", _text(message)))
    for index, cell in enumerate(cells):
        cell["id"] = f"turn-{index}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _cell(kind: str, source: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": source}
    if kind == "code":
        cell |= {"execution_count": None, "outputs": []}
    return cell


def _rows_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# nbllm log", ""]
    for row in rows:
        lines += [f"## {row.get('time')} {row.get('model')} ({row.get('status')})", ""]
        if row.get("conversation"):
            lines += [f"Conversation: {row['conversation']}", ""]
        if row.get("reply"):
            lines += [str(row["reply"]), ""]
        if row.get("error_message"):
            lines += [f"Error: {row.get('error_class')}: {row['error_message']}", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> Path:
    target = path.expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LogError(f"cannot write {target}: {exc.strerror}", hint="give another path") from None
    return target
