"""A dedicated event loop on a background thread, for running async calls from
synchronous code, including from inside a running kernel whose own loop must not
be re-entered (no nest_asyncio: under ipykernel 7 it drops queued cells)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CANCEL_GRACE_S = 2.0
"""How long an interrupted caller waits for the cancelled task to close its connection."""


class LoopThread:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="nbllm-loop", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the background loop and wait; Ctrl-C / a kernel interrupt cancels it
        and waits (briefly) until its connection is closed, then `KeyboardInterrupt` propagates."""
        finished = threading.Event()

        async def tracked() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = self.submit(tracked())
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            finished.wait(CANCEL_GRACE_S)
            raise


_LOOP_THREAD = LoopThread()


def loop_thread() -> LoopThread:
    return _LOOP_THREAD
