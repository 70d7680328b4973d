"""The conversation log's SQLite database: its schema (versioned by migrations), writing one
call, and the queries behind ``nbllm.logs()``, ``%llm_log search|stats|prune`` and exports.

One file, in WAL mode, so several kernels write at once and readers never block writers; each
write is one ``BEGIN IMMEDIATE`` transaction, and a writer waits up to `BUSY_TIMEOUT_S` for
another's lock. Messages are stored once, keyed by the SHA-256 of their canonical JSON, and a
call refers to its messages by hash in order: a 50-turn conversation keeps each message once,
not once per call. Prompts (the newest user message) and replies are indexed by SQLite's
full-text search (FTS5) for ``search``. Nothing here masks: the writer masks before it writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from nbllm._exceptions import LogError

BUSY_TIMEOUT_S = 10.0

MIGRATIONS: list[str] = [
    # 1: calls, content-addressed messages, full-text search over prompts and replies
    """
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        provider TEXT,
        model TEXT NOT NULL,
        requested TEXT,
        protocol TEXT,
        status TEXT NOT NULL,
        error_class TEXT,
        error_message TEXT,
        latency_s REAL,
        ttft_s REAL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        reasoning_tokens INTEGER,
        tokens_estimated INTEGER,
        cost REAL,
        cost_reported INTEGER,
        retries INTEGER,
        fallbacks TEXT,
        notebook TEXT,
        cell_id TEXT,
        conversation TEXT,
        kernel TEXT,
        reply TEXT,
        reasoning TEXT,
        tool_calls TEXT,
        tool_arguments TEXT,
        approval TEXT,
        result_chars INTEGER,
        texts INTEGER,
        replayed TEXT
    );
    CREATE INDEX calls_by_time ON calls(time);
    CREATE INDEX calls_by_model ON calls(model, time);
    CREATE INDEX calls_by_conversation ON calls(conversation, time);
    CREATE TABLE messages (
        hash TEXT PRIMARY KEY,
        role TEXT,
        content TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE call_messages (
        call_id INTEGER NOT NULL,
        position INTEGER NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (call_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX call_messages_by_hash ON call_messages(hash);
    CREATE VIRTUAL TABLE calls_text USING fts5(prompt, reply);
    """,
]
"""Each entry moves the schema one version up (``PRAGMA user_version``); append, never edit."""

COLUMNS = (
    "id",
    "time",
    "kind",
    "provider",
    "model",
    "requested",
    "protocol",
    "status",
    "error_class",
    "error_message",
    "latency_s",
    "ttft_s",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "tokens_estimated",
    "cost",
    "cost_reported",
    "retries",
    "fallbacks",
    "notebook",
    "cell_id",
    "conversation",
    "kernel",
    "reply",
    "reasoning",
    "tool_calls",
    "tool_arguments",
    "approval",
    "result_chars",
    "texts",
    "replayed",
)


@dataclass
class LoggedCall:
    """One row to write: the call's columns, its messages (already masked) and its prompt."""

    columns: dict[str, Any]
    messages: list[dict[str, Any]]
    prompt: str


def message_hash(message: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(message).encode()).hexdigest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating) the log at `path`; a `LogError` says what is wrong."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise LogError(
            f"cannot open the log at {path}: {exc}", hint="give another path: %llm_log on PATH"
        ) from None
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            _prepare(connection, path)
            return connection
        except sqlite3.OperationalError as exc:
            # Switching a new file to WAL needs it alone, and SQLite says "locked" at once,
            # without waiting, while another kernel is creating the same log: wait and retry.
            if "locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            failure: sqlite3.Error = exc
        except sqlite3.Error as exc:
            failure = exc
        connection.close()
        raise LogError(
            f"the log at {path} cannot be used: {failure}",
            hint="if it is not an nbllm log, give another path (%llm_log on PATH)",
        ) from None


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; a crash may lose the last row
    _migrate(connection, path)


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LogError(
            f"the log at {path} was written by a newer nbllm (schema {version}; this one knows "
            f"{len(MIGRATIONS)})",
            hint="upgrade nbllm (pip install -U nbllm), or log to another path",
        )
    if version == len(MIGRATIONS):
        return
    # Two kernels opening a new log at once: the exclusive lock lets one migrate; the other
    # then sees the new version and does nothing.
    connection.execute("BEGIN EXCLUSIVE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def write(connection: sqlite3.Connection, calls: Sequence[LoggedCall]) -> None:
    """Write calls in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for call in calls:
            names = [name for name in COLUMNS if name != "id"]
            cursor = connection.execute(
                f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [call.columns.get(name) for name in names],
            )
            call_id = cursor.lastrowid
            rows = []
            for position, message in enumerate(call.messages):
                digest = message_hash(message)
                connection.execute(
                    "INSERT OR IGNORE INTO messages (hash, role, content) VALUES (?, ?, ?)",
                    (digest, message.get("role"), canonical(message)),
                )
                rows.append((call_id, position, digest))
            connection.executemany("INSERT INTO call_messages VALUES (?, ?, ?)", rows)
            connection.execute(
                "INSERT INTO calls_text (rowid, prompt, reply) VALUES (?, ?, ?)",
                (call_id, call.prompt, call.columns.get("reply") or ""),
            )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def fts_query(text: str) -> str:
    """The user's words as an FTS5 query that matches all of them (each quoted: FTS5's own
    syntax, such as ``-`` or ``AND``, is not the user's)."""
    words = text.split()
    if not words:
        raise LogError("search for some words: %llm_log search TEXT")
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def query(
    connection: sqlite3.Connection,
    *,
    since: datetime | None = None,
    model: str | None = None,
    status: str | None = None,
    search: str | None = None,
    conversation: str | None = None,
    limit: int | None = 100,
) -> list[dict[str, Any]]:
    """Calls, newest first, filtered; every column but the message hashes."""
    where, args = [], []
    if since is not None:
        where.append("time >= ?")
        args.append(since.astimezone(timezone.utc).isoformat())
    if model is not None:
        # "p/m" is one model; "p" every model of provider p
        where.append("(model = ? OR provider = ?)")
        args += [model, model]
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if conversation is not None:
        where.append("conversation = ?")
        args.append(conversation)
    selected = ", ".join(f"calls.{name}" for name in COLUMNS)
    if search is not None:
        # Newest matches first by rowid, which FTS5 walks backwards and stops at the limit: a
        # word in most calls is as fast as a rare one. Call ids grow with time.
        sql = f"SELECT {selected} FROM calls_text JOIN calls ON calls.id = calls_text.rowid"
        where.insert(0, "calls_text MATCH ?")
        args.insert(0, fts_query(search))
        order = " ORDER BY calls_text.rowid DESC"
    else:
        sql = f"SELECT {selected} FROM calls"
        order = " ORDER BY time DESC, id DESC"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += order
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [dict(zip(COLUMNS, row, strict=True)) for row in connection.execute(sql, args)]


def messages_of(connection: sqlite3.Connection, call_id: int) -> list[dict[str, Any]]:
    """The messages a call sent, in order."""
    rows = connection.execute(
        "SELECT m.content FROM call_messages c JOIN messages m ON m.hash = c.hash "
        "WHERE c.call_id = ? ORDER BY c.position",
        (call_id,),
    )
    return [json.loads(content) for (content,) in rows]


def stats(connection: sqlite3.Connection, since: datetime | None = None) -> list[dict[str, Any]]:
    """Per day and model: calls, errors, tokens and cost."""
    sql = (
        "SELECT substr(time, 1, 10) AS day, model, count(*) AS calls, "
        "sum(status NOT IN ('ok', 'cancelled')) AS errors, sum(prompt_tokens) AS prompt_tokens, "
        "sum(completion_tokens) AS completion_tokens, sum(cost) AS cost FROM calls"
    )
    args: list[Any] = []
    if since is not None:
        sql += " WHERE time >= ?"
        args.append(since.astimezone(timezone.utc).isoformat())
    sql += " GROUP BY day, model ORDER BY day DESC, calls DESC"
    names = ["day", "model", "calls", "errors", "prompt_tokens", "completion_tokens", "cost"]
    return [dict(zip(names, row, strict=True)) for row in connection.execute(sql, args)]


def prune(connection: sqlite3.Connection, before: datetime) -> int:
    """Delete calls older than `before`, and the messages no call refers to any more."""
    cutoff = before.astimezone(timezone.utc).isoformat()
    connection.execute("BEGIN IMMEDIATE")
    try:
        ids = [row[0] for row in connection.execute("SELECT id FROM calls WHERE time < ?", (cutoff,))]
        for chunk in _chunks(ids, 500):
            marks = ", ".join("?" * len(chunk))
            connection.execute(f"DELETE FROM call_messages WHERE call_id IN ({marks})", chunk)
            connection.execute(f"DELETE FROM calls_text WHERE rowid IN ({marks})", chunk)
            connection.execute(f"DELETE FROM calls WHERE id IN ({marks})", chunk)
        connection.execute(
            "DELETE FROM messages WHERE NOT EXISTS "
            "(SELECT 1 FROM call_messages c WHERE c.hash = messages.hash)"
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return len(ids)


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` or ``2w`` as a timedelta."""
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.replace(".", "", 1).isdigit():
        raise LogError(f"give an age such as 90d, 12h, 30m or 2w, not {text!r}")
    return timedelta(**{units[unit]: float(number)})
