"""Checkpoints: the rows of a batch run already answered, so a rerun does not pay for them twice.

One SQLite file; a row is keyed by a hash of its content, the template, the model, the
request parameters and the endpoint URL, so a change to any of them asks again, while adding
rows to the table reuses the ones done. Only rows that ended well are kept: a failed row is
asked again on the next run. Each row is committed as it finishes, so an interrupted run, or
a kernel that died, keeps everything done up to that moment.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import platformdirs

from nbllm._constants import CHECKPOINT_LOCK_WAIT_S
from nbllm._exceptions import ConfigFileError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, outcome TEXT NOT NULL, done_at REAL NOT NULL)"
)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (anything else by its ``str``). Mapping keys of any
    type are kept apart by type (a column ``0`` and a column ``"0"``), so a table whose column
    names mix numbers and text has a fingerprint too."""
    text = json.dumps(_text_keys(parts), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else f"{type(key).__name__}:{key!r}"


def _text_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k if isinstance(k, str) else f"{type(k).__name__}:{k!r}": _text_keys(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_text_keys(item) for item in value]
    return value


def default_path(run_key: str) -> Path:
    """Where a run keeps its checkpoint when the caller names none: the platform's cache dir,
    one file per template, model, parameters and endpoint."""
    return Path(platformdirs.user_cache_dir("nbllm")) / "map" / f"{run_key[:20]}.sqlite"


def _saved_row(text: Any) -> dict[str, Any]:
    row = json.loads(text)
    if not isinstance(row, dict):
        raise ValueError(f"a saved row is {type(row).__name__}, not a row")
    return row


class Checkpoint:
    """The done rows of one run (or of one Dask partition), safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=CHECKPOINT_LOCK_WAIT_S
            )
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            # A process that dies (a kernel killed mid-run) keeps every committed row; only a power
            # cut could take the last few. It spares an fsync per row.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise self.error("cannot open", exc) from exc

    def error(self, doing: str, exc: BaseException) -> ConfigFileError:
        """The error for a checkpoint that cannot be used: what failed, and the way out."""
        return ConfigFileError(
            f"{doing} the checkpoint {self.path} ({type(exc).__name__}: {exc})",
            hint="it may be another kind of file, a folder, damaged, or held by another process: "
            "give another path (checkpoint=PATH, --checkpoint PATH), or run without one "
            "(checkpoint=False, --checkpoint none)",
        )

    def done(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The saved outcome of each of `keys` that is done."""
        wanted = list(keys)
        found: dict[str, dict[str, Any]] = {}
        try:
            with self._lock:
                for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(f"SELECT key, outcome FROM rows WHERE key IN ({marks})", chunk)
                    found.update((key, _saved_row(outcome)) for key, outcome in rows)
        except (sqlite3.Error, ValueError) as exc:
            raise self.error("cannot read", exc) from exc
        return found

    def save(self, key: str, outcome: Mapping[str, Any]) -> None:
        """Keep one finished row (committed at once)."""
        text = json.dumps(outcome, default=str, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO rows (key, outcome, done_at) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"
