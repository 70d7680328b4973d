"""Cassettes: a notebook's real calls recorded once to a YAML file, replayed later (in CI, under
nbval) with no server, no key and no network.

Modes: ``record`` sends every request and records it (a fresh recording: the file is rewritten
from the first exchange on); ``replay`` answers only from the file, and a request it has no
recording of fails with `CassetteMissError` (never a network call); ``auto`` replays what the
file held when it was opened and records what is missing. ``NBLLM_CASSETTE_MODE`` in the
environment overrides the mode of every cassette, so CI can say ``replay`` and a person
re-records with ``record``.

A request matches a recording by method, URL and JSON body (see `recording.match_key`). The
same request recorded several times (a 429, then the success) plays its recordings in order,
and again from the first once all were played. Replies come back as fast as they can, or at
their recorded pace with ``speed="recorded"``.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import os
import tempfile
import threading
import warnings
from collections import defaultdict
from pathlib import Path

import httpx
import yaml

from nbllm._constants import MAX_CASSETTE_CHARS
from nbllm._exceptions import CassetteError, CassetteMissError, ConfigError, ConfigFileError
from nbllm._providers.yaml_text import load_yaml
from nbllm._replay import tape
from nbllm._replay.recording import (
    Recording,
    ScrubbedRequest,
    recording_response,
)

MODES = ("record", "replay", "auto")
SPEEDS = ("fast", "recorded")
MODE_ENV = "NBLLM_CASSETTE_MODE"
FORMAT_VERSION = 1
HEADER = (
    "# nbllm cassette: HTTP exchanges recorded by %llm_cassette / nbllm.cassette(), replayed\n"
    "# in their place. Keys and credential headers are never written. Re-record with\n"
    "# NBLLM_CASSETTE_MODE=record.\n"
)
DIFF_LINES = 12
"""How many lines of difference a miss shows."""


def forced_mode() -> str | None:
    """The mode ``NBLLM_CASSETTE_MODE`` forces (checked), or None."""
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if not mode:
        return None
    if mode not in MODES:
        raise ConfigError(f"{MODE_ENV}={mode!r} is not a mode; choose from {', '.join(MODES)}")
    return mode


class Cassette(tape.Switchable):
    """One cassette file, its mode and what it played and recorded this session. Use it as a
    context manager (``with nbllm.cassette(path):``), or `activate` it for the session."""

    slot = "cassette"

    def __init__(self, path: str | os.PathLike[str], mode: str = "auto", speed: str = "fast") -> None:
        if mode not in MODES:
            raise ConfigError(f"cassette mode {mode!r} is not one of {', '.join(MODES)}")
        if speed not in SPEEDS:
            raise ConfigError(f"cassette speed {speed!r} is not one of {', '.join(SPEEDS)}")
        self.path = Path(path).expanduser()
        self.asked_mode = mode
        self.mode = forced_mode() or mode
        self.speed = speed
        self._lock = threading.Lock()
        self.recordings: list[Recording] = [] if self.mode == "record" else self._load()
        self._by_key: dict[str, list[int]] = defaultdict(list)
        for index, recording in enumerate(self.recordings):
            self._by_key[recording.match_key()].append(index)
        self._plays: dict[str, int] = defaultdict(int)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbllm-cassette")
        self._pending: concurrent.futures.Future[None] | None = None
        self.played = 0
        self.recorded = 0

    # -- the file -----------------------------------------------------------------------

    def _load(self) -> list[Recording]:
        if not self.path.exists():
            if self.mode == "replay":
                raise ConfigFileError(
                    f"no cassette at {self.path} to replay",
                    hint=f"record it first: run the notebook once with {MODE_ENV}=record (or --mode auto)",
                )
            return []
        try:
            text = self.path.read_text(encoding="utf-8")
            data = load_yaml(text, str(self.path), max_chars=MAX_CASSETTE_CHARS) or {}
            entries = data.get("interactions") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ValueError("it has no 'interactions' list")
        except (OSError, ValueError) as exc:
            raise ConfigFileError(
                f"cannot read the cassette {self.path}: {exc}",
                hint=f"re-record it with {MODE_ENV}=record, or fix the file",
            ) from None
        recordings = []
        for number, entry in enumerate(entries, 1):
            try:
                recordings.append(Recording.from_dict(entry))
            except ValueError as exc:
                raise CassetteError(
                    f"cannot read the cassette {self.path}: its entry {number} of {len(entries)} is {exc}",
                    hint=f"re-record it with {MODE_ENV}=record, or fix that entry",
                ) from None
        return recordings

    def _save(self, recordings: list[Recording]) -> None:
        """Write `recordings` (a snapshot) atomically: a reader sees the old file or the new one.
        Runs on the cassette's own writer thread, never on the event loop."""
        document = {"version": FORMAT_VERSION, "interactions": [r.to_dict() for r in recordings]}
        text = HEADER + yaml.safe_dump(
            document, sort_keys=False, allow_unicode=True, width=2**31, default_flow_style=False
        )
        if len(text) > MAX_CASSETTE_CHARS:
            # Written, it could not be read back: keep the last file that can, and say so now.
            warnings.warn(
                f"the cassette {self.path} would be {len(text):,} characters, past the "
                f"{MAX_CASSETTE_CHARS:,} nbllm reads back; this exchange was not written. Split the "
                "notebook's calls over several cassettes",
                stacklevel=1,
            )
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, self.path)

    def flush(self) -> None:
        """Wait until every recorded exchange is in the file (done when the cassette stops)."""
        with self._lock:
            pending = self._pending
        if pending is not None:
            pending.result()

    def deactivate(self) -> None:
        super().deactivate()
        self.flush()

    # -- the hook -------------------------------------------------------------------------

    async def handle(self, request: httpx.Request, inner: httpx.AsyncBaseTransport) -> httpx.Response:
        """The response to `request` (called by the transport hook): its recording played back,
        or, when there is none and the mode allows it, the server's, recorded as it streams."""
        scrubbed = ScrubbedRequest.of(request)
        key = scrubbed.key
        if self.mode != "record":
            recording = self._next_recording(key)
            if recording is not None:
                return recording.response(request, "cassette", self.speed)
            if self.mode == "replay":
                raise self._miss(request.method, scrubbed.url, key)
        request.headers["accept-encoding"] = "identity"  # recorded as sent, not compressed
        response = await inner.handle_async_request(request)
        return recording_response(response, request, scrubbed, self._add)

    def _next_recording(self, key: str) -> Recording | None:
        with self._lock:
            indices = self._by_key.get(key)
            if not indices:
                return None
            index = indices[self._plays[key] % len(indices)]
            self._plays[key] += 1
            self.played += 1
            return self.recordings[index]

    def _add(self, recording: Recording) -> None:
        # Written, but not replayed in this session: a retry of the same request must reach the
        # server again (a 429 recorded a moment ago is not the answer to its retry).
        with self._lock:
            self.recordings.append(recording)
            self.recorded += 1
            # Off the event loop, in order (one writer thread), each write a whole snapshot.
            self._pending = self._writer.submit(self._save, list(self.recordings))

    def _miss(self, method: str, url: str, key: str) -> CassetteMissError:
        with self._lock:
            keys = [r.match_key() for r in self.recordings]
        closest = difflib.get_close_matches(key, keys, n=1, cutoff=0.0)
        if closest:
            diff = difflib.unified_diff(
                _lines(closest[0]), _lines(key), "recorded", "this request", lineterm="", n=1
            )
            shown = "\n".join(list(diff)[2 : 2 + DIFF_LINES])
            detail = f"; the closest recorded request differs:\n{shown}"
        else:
            detail = "; the cassette holds no recordings"
        return CassetteMissError(
            f"the cassette {self.path.name} has no recording of {method} {url} (replay mode), so "
            f"nothing was sent{detail}",
            hint=f"re-record what is missing: %llm_cassette {self.path} --mode auto, or run with "
            f"{MODE_ENV}=record",
        )

    def describe(self) -> str:
        """One line: the file, its mode and speed, and what it replayed and recorded so far."""
        forced = f" (forced by {MODE_ENV})" if self.mode != self.asked_mode else ""
        return (
            f"cassette {self.path}: mode {self.mode}{forced}, speed {self.speed}; {len(self.recordings)} "
            f"recorded exchanges, {self.played} replayed and {self.recorded} recorded this session"
        )

    def __repr__(self) -> str:
        return f"<Cassette {self.describe()}>"

    @property
    def replaying_only(self) -> bool:
        """Whether nothing reaches the network (``replay`` mode): servers need not run."""
        return self.mode == "replay"


def _lines(key: str) -> list[str]:
    """A match key as lines to compare: the request line, then the body's fields one a line."""
    first, _, body = key.partition("\n")
    return [first, *body.replace(', "', ',\n"').splitlines()]


def active_cassette() -> Cassette | None:
    found = tape.active("cassette")
    return found if isinstance(found, Cassette) else None
