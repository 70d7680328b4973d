"""The session: the one owner of what a notebook session knows.

Providers (the store), the call history and the last result, conversations, calls in flight,
pacing and rate limits, what was learned about providers (no Responses API here, a tokenizer
endpoint there, a schema refused), and the cassette and cache slots: each layer defines its own
kind of state, and the session holds one of each, made on first use (`Session.part`). The
session sits below every layer and imports none of them, so the layers keep their order while
their state has one owner; a test gets a fresh session from one fixture (`new_session`) instead
of clearing private names one by one.

Not here, on purpose: the background event-loop thread, the pooled HTTP clients (they belong
to event loops, and only those loops can close them) and the local model's server process.
They are the process's resources, not what the session knows, and a new session must not
strand open sockets or a running server.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

T = TypeVar("T")


class Session:
    """One of each kind of session state, by type."""

    def __init__(self) -> None:
        self._parts: dict[type[Any], Any] = {}
        self._lock = threading.Lock()

    def part(self, kind: type[T]) -> T:
        """The session's `kind`, made with ``kind()`` the first time it is asked for."""
        found = self._parts.get(kind)  # every call asks: a dict lookup, no lock, once made
        if found is None:
            with self._lock:
                found = self._parts.setdefault(kind, kind())
        return found  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        kinds = ", ".join(sorted(kind.__name__ for kind in self._parts))
        return f"<nbllm session: {kinds or 'nothing yet'}>"


_current = Session()


def session() -> Session:
    """The running session."""
    return _current


def new_session() -> Session:
    """Start a fresh session (no providers, history, conversations or learned facts) and make
    it the running one; the old one is dropped."""
    global _current
    _current = Session()
    return _current
