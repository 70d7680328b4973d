"""Calls in flight: which `%%chat` replies are streaming now, and a way to stop each one.

A run registers the asyncio task that streams its reply; `stop` cancels that task
on whatever loop it runs (the kernel's own, or nbllm's background loop), so the
panel's Stop button works from the kernel's main thread while a cell awaits.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from nbllm._observers import Observers
from nbllm._session import session

_ids = itertools.count(1)


@dataclass
class RunningCall:
    model: str
    task: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    id: int = field(default_factory=lambda: next(_ids))
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    stopped: bool = False
    """True once `stop` was asked for: the run ends as stopped, not as interrupted."""


class InFlight:
    """The running calls of this session, observable by the panel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, RunningCall] = {}
        self._observers = Observers("in-flight")

    def add(self, model: str, task: asyncio.Future[Any]) -> RunningCall:
        call = RunningCall(model, task, task.get_loop())
        with self._lock:
            self._calls[call.id] = call
        self._observers.emit()
        return call

    def remove(self, call: RunningCall) -> None:
        with self._lock:
            self._calls.pop(call.id, None)
        self._observers.emit()

    def calls(self) -> list[RunningCall]:
        with self._lock:
            return list(self._calls.values())

    def stop(self, call_id: int) -> bool:
        """Cancel the call's task; False when it has already ended."""
        with self._lock:
            call = self._calls.get(call_id)
        if call is None or call.task.done():
            return False
        call.stopped = True
        call.loop.call_soon_threadsafe(call.task.cancel)
        return True

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        return self._observers.subscribe(listener)

    def clear(self) -> None:
        """Forget every call (they are not cancelled; a fresh session's state, for tests)."""
        with self._lock:
            self._calls.clear()
        self._observers.emit()


def get_in_flight() -> InFlight:
    """The session's calls in flight (the panel's Stop buttons)."""
    return session().part(InFlight)
