"""The opt-in conversation log: ``%llm_log on [PATH]``, ``NBLLM_LOG=PATH``, ``ChatMagics.log``.

When on, it follows the call history (the one place every call of every kind passes) and asks
calls to carry their transcript (`History.keep_transcripts`). A record is put on a queue: that
is all the kernel pays (microseconds); a writer thread masks it with the one masker (every
secret of the session, by value), writes it, and drops the transcript. If a write fails (a
locked or full disk), it is tried again once, then counted as lost and said once on stderr, and
``%llm_log`` shows how many; a call is never failed by its log.
"""

from __future__ import annotations

import atexit
import os
import queue
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs

from nbllm._calls.history import CallRecord, Transcript, get_history
from nbllm._exceptions import LogError
from nbllm._log import database
from nbllm._providers.secret_registry import session_secrets
from nbllm._providers.secret_text import mask_json, mask_values
from nbllm._session import session

LOG_ENV = "NBLLM_LOG"
STOP = None
RETRY_AFTER_S = 0.5
BATCH = 200
"""Records written in one transaction at most."""


def default_log_path() -> Path:
    """``NBLLM_LOG`` when set to a path, else ``log.db`` in the user data directory."""
    named = os.environ.get(LOG_ENV, "")
    if named and named not in ("1", "on", "true"):
        return Path(named).expanduser()
    return Path(platformdirs.user_data_dir("nbllm", appauthor=False)) / "log.db"


class ConversationLog:
    """The session's log: off, or writing to one database."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.written = 0
        self.lost = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[tuple[CallRecord, Transcript | None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._connection: sqlite3.Connection | None = None
        self._kernel = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def on(self) -> bool:
        return self.path is not None

    def turn_on(self, path: Path | str | None = None) -> Path:
        """Start logging to `path` (the default when None); the database is opened (and
        migrated) now, so a bad path is an error here, not a silent loss later."""
        target = Path(path).expanduser() if path else default_log_path()
        if self.on and target == self.path:
            return target
        connection = database.connect(target)
        self.turn_off()
        self.path, self._connection = target, connection
        history = get_history()
        history.transcript_wanted_by.add("log")
        self._unsubscribe = history.subscribe(self._enqueue)
        self._thread = threading.Thread(target=self._drain, name="nbllm-log", daemon=True)
        self._thread.start()
        history.notice = f"calls are logged to {target} (%llm_log off stops it)"
        return target

    def turn_off(self) -> None:
        """Stop following calls; what is queued is written first."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        get_history().transcript_wanted_by.discard("log")
        if self._thread is not None:
            self._queue.put(STOP)
            self._thread.join(10)
            self._thread = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.path = None

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued record is written (or given up)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def connection(self) -> sqlite3.Connection:
        """A connection for reading: the log's own file, or the default one when off (which
        must exist: reading never creates a log)."""
        self.flush()
        path = self.path or default_log_path()
        if not self.on and not path.exists():
            raise LogError(
                f"there is no log at {path} yet",
                hint="%llm_log on [PATH] starts one (NBLLM_LOG=PATH names another file to read)",
            )
        return database.connect(path)

    def status(self) -> str:
        if not self.on:
            return f"The log is off. %llm_log on [PATH] starts it (default {default_log_path()})."
        lost = f"; {self.lost} lost ({self.last_error})" if self.lost else ""
        return f"Logging to {self.path}: {self.written} calls written this session{lost}."

    def _enqueue(self, record: CallRecord) -> None:
        """All the calling thread pays: the record and its transcript onto the queue."""
        self._queue.put((record, record.transcript))

    def _drain(self) -> None:
        while True:
            items = [self._queue.get()]
            # What queued up meanwhile (a map run's rows) goes in the same transaction.
            while len(items) < BATCH and items[-1] is not STOP:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                calls = [item for item in items if item is not STOP]
                if calls:
                    self._write([to_logged(record, transcript, self._kernel) for record, transcript in calls])
            finally:
                for _ in items:
                    self._queue.task_done()
            if items[-1] is STOP:
                return

    def _write(self, logged: list[database.LoggedCall]) -> None:
        for attempt in range(2):
            try:
                assert self._connection is not None
                database.write(self._connection, logged)
                self.written += len(logged)
                return
            except (sqlite3.Error, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if attempt == 0:
                    time.sleep(RETRY_AFTER_S)
        first = not self.lost
        self.lost += len(logged)
        if first:
            print(f"nbllm: a call could not be logged to {self.path}: {self.last_error}", file=sys.stderr)


def to_logged(record: CallRecord, transcript: Transcript | None, kernel: str) -> database.LoggedCall:
    """A record as a row: every text masked with the one masker; no header is ever kept."""
    secrets = session_secrets()
    messages = [mask_json(m, secrets) for m in (transcript.messages if transcript else [])]
    prompt = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    columns: dict[str, Any] = {
        "time": record.started_at.isoformat(),
        "kind": record.kind,
        "provider": record.model.partition("/")[0] if record.kind != "tool" else None,
        "model": record.model,
        "requested": record.requested,
        "protocol": transcript.protocol if transcript else None,
        "status": record.status,
        "error_class": record.error_class,
        "error_message": mask_values(record.error_message, secrets) if record.error_message else None,
        "latency_s": record.latency_s,
        "ttft_s": record.ttft_s,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "tokens_estimated": int(record.tokens_estimated),
        "cost": record.cost,
        "cost_reported": int(record.cost_reported),
        "retries": record.retries,
        "fallbacks": database.canonical(record.fallbacks) if record.fallbacks else None,
        "notebook": record.notebook,
        "cell_id": record.cell_id,
        "conversation": record.conversation,
        "kernel": kernel,
        "reply": mask_values(transcript.reply, secrets) if transcript else None,
        "reasoning": mask_values(transcript.reasoning, secrets)
        if transcript and transcript.reasoning
        else None,
        "tool_calls": database.canonical(mask_json(transcript.tool_calls, secrets))
        if transcript and transcript.tool_calls
        else None,
        "tool_arguments": record.tool_arguments,  # masked when the tool call was recorded
        "approval": record.approval,
        "result_chars": record.result_chars,
        "texts": record.texts or None,
        "replayed": record.replayed,
    }
    return database.LoggedCall(columns, messages, prompt)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def get_log() -> ConversationLog:
    return session().part(ConversationLog)


def _close_at_exit() -> None:
    """Write what is queued before the kernel exits."""
    log = session().part(ConversationLog)
    if log.on:
        log.flush(5)


atexit.register(_close_at_exit)


def check_path(path: str) -> Path:
    """A path the user typed, as the log's file (a folder gets ``log.db``)."""
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / "log.db"
    if target.suffix in (".yaml", ".yml", ".json", ".ipynb"):
        raise LogError(f"{target} does not look like a log database; give a .db path")
    return target
