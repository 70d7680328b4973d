"""Listeners of one observable (the store, the history, the calls in flight).

Thread-safe, and an observer's exception is logged, never raised: a panel's bug must
not undo a store change or break the call that just finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Listener = Callable[..., None]


class Observers:
    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every emit; returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, *args: Any) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(*args)
            except Exception:
                logger.exception("%s listener failed", self._what)
