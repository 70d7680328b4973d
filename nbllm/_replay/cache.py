"""The response cache (opt-in, ``%llm_cache on``): a repeated deterministic request is answered
from an SQLite file instead of the endpoint.

Only requests that ask for the same answer every time are cached: temperature 0 or a seed
(embeddings always), unless ``force``. The key is the endpoint's URL and the request's JSON
body (see `recording.match_key`); only complete 2xx replies are stored, as recordings (the same
shape a cassette holds: no key, no credential header). A cached reply is marked as such in the
footer and the history. Entries older than the time to live are not used, and are removed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from nbllm._constants import CACHE_LOCK_WAIT_S
from nbllm._exceptions import ConfigError, ConfigFileError
from nbllm._replay import tape
from nbllm._replay.recording import (
    Recording,
    ScrubbedRequest,
    digest,
    identity,
    recording_response,
)

CACHE_FILE_NAME = "responses.sqlite"


def default_path() -> Path:
    """``responses.sqlite`` in the platform's cache directory for nbllm."""
    return Path(platformdirs.user_cache_dir("nbllm")) / CACHE_FILE_NAME


def deterministic(url: str, body: Any) -> bool:
    """Whether the request asks for the same answer every time: temperature 0 or a seed, or an
    embeddings request."""
    if url.split("?")[0].endswith("/embeddings"):
        return True
    if not isinstance(body, dict):
        return False
    temperature = body.get("temperature")
    return temperature == 0 or body.get("seed") is not None


class ResponseCache(tape.Switchable):
    """One cache file and this session's hits and misses. Use it as a context manager (``with
    nbllm.response_cache():``), or `activate` it for the session."""

    slot = "cache"

    def __init__(
        self, path: str | os.PathLike[str] | None = None, ttl_s: float | None = None, force: bool = False
    ) -> None:
        if ttl_s is not None and not ttl_s > 0:
            raise ConfigError(
                f"the cache's time to live should be a positive number of seconds, not {ttl_s!r}"
            )
        self.path = Path(path).expanduser() if path else default_path()
        self.ttl_s = ttl_s
        self.force = force
        self.clock: Callable[[], float] = time.time
        """Wall-clock seconds, for entries' ages (they outlive the process); tests swap it."""
        self.hits = 0
        self.misses = 0
        self.skipped = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=CACHE_LOCK_WAIT_S)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, created REAL, recording TEXT)"
            )
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigFileError(
                f"cannot open the response cache at {self.path}: {exc}",
                hint="give a writable file with --path",
            ) from None

    async def handle(self, request: httpx.Request, inner: httpx.AsyncBaseTransport) -> httpx.Response:
        """The reply to `request`: from the file when it holds one, else from `inner` (the
        network), kept when it is a complete success and the request is cacheable."""
        scrubbed = ScrubbedRequest.of(request)
        if request.method != "POST" or not (self.force or deterministic(scrubbed.url, scrubbed.body)):
            self.skipped += 1
            return await inner.handle_async_request(request)
        request.headers["accept-encoding"] = "identity"  # stored decoded; part of no key
        key = digest(identity(request, scrubbed.secrets))
        try:
            recording = self._get(key)
        except sqlite3.Error as exc:
            self._bypass("read", exc)
            return await inner.handle_async_request(request)
        if recording is not None:
            self.hits += 1
            return recording.response(request, "cache")
        self.misses += 1
        response = await inner.handle_async_request(request)
        if not 200 <= response.status_code < 300:
            return response
        finished: list[Recording] = []

        def keep() -> None:  # the engine calls it once the reply passed every check
            if finished:
                try:
                    self._put(key, finished[0])
                except sqlite3.Error as exc:
                    self._bypass("write", exc)

        return recording_response(response, request, scrubbed, finished.append, keep)

    def _bypass(self, doing: str, exc: sqlite3.Error) -> None:
        """A locked or damaged file: the call goes on without the cache, and the user is told."""
        self.skipped += 1
        warnings.warn(
            f"the response cache at {self.path} could not {doing} ({exc}); this call went to the "
            "endpoint. Another process may hold the file, or it is damaged: %llm_cache clear, or "
            "turn it off with %llm_cache off",
            stacklevel=2,
        )

    def _get(self, key: str) -> Recording | None:
        with self._lock:
            row = self._db.execute(
                "SELECT created, recording FROM responses WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            created, text = row
            if self.ttl_s is not None and self.clock() - created > self.ttl_s:
                self._db.execute("DELETE FROM responses WHERE key = ?", (key,))
                self._db.commit()
                return None
        try:
            return Recording.from_dict(json.loads(text))
        except ValueError:
            return None  # a damaged entry is a miss; the next reply replaces it

    def _put(self, key: str, recording: Recording) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                (key, self.clock(), json.dumps(recording.to_dict())),
            )
            self._db.commit()

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        with self._lock:
            count = self.entries()
            self._db.execute("DELETE FROM responses")
            self._db.commit()
        return count

    def entries(self) -> int:
        """How many replies the file holds."""
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the file (it stays); a closed cache answers nothing more."""
        with self._lock:
            self._db.close()

    def stats(self) -> str:
        """One line: the file, its entries and size, the settings, and this session's hits."""
        size = self.path.stat().st_size if self.path.exists() else 0
        ttl = f"{self.ttl_s:g} s" if self.ttl_s else "none"
        which = "every request" if self.force else "deterministic requests (temperature 0 or a seed)"
        return (
            f"response cache {self.path}: {self.entries()} entries, {size / 1024:.0f} KiB, time to "
            f"live {ttl}, caching {which}; this session {self.hits} hits, {self.misses} misses, "
            f"{self.skipped} not cacheable"
        )

    def __repr__(self) -> str:
        return f"<ResponseCache {self.stats()}>"


def turn_on(path: str | Path | None = None, ttl_s: float | None = None, force: bool = False) -> ResponseCache:
    """Cache deterministic replies from now on (replacing any cache in use)."""
    cache = ResponseCache(path, ttl_s, force)
    previous = tape.use("cache", cache)
    if isinstance(previous, ResponseCache):
        previous.close()
    return cache


def turn_off() -> ResponseCache | None:
    """Stop caching; returns the cache that was in use (its file stays)."""
    previous = tape.use("cache", None)
    if isinstance(previous, ResponseCache):
        previous.close()
        return previous
    return None


def active_cache() -> ResponseCache | None:
    found = tape.active("cache")
    return found if isinstance(found, ResponseCache) else None
