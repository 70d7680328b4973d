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

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, outcome TEXT NOT NULL, done_at REAL NOT NULL)"
)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts (anything else by its ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def default_path(run_key: str) -> Path:
    """Where a run keeps its checkpoint when the caller names none: the platform's cache dir,
    one file per template, model, parameters and endpoint."""
    return Path(platformdirs.user_cache_dir("nbllm")) / "map" / f"{run_key[:20]}.sqlite"


class Checkpoint:
    """The done rows of one run (or of one Dask partition), safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        # A process that dies (a kernel killed mid-run) keeps every committed row; only a power
        # cut could take the last few. It spares an fsync per row.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def done(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The saved outcome of each of `keys` that is done."""
        wanted = list(keys)
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, outcome FROM rows WHERE key IN ({marks})", chunk)
                found.update((key, json.loads(outcome)) for key, outcome in rows)
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
