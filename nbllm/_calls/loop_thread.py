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


INTERRUPT_POLL_S = 0.05
"""How often a caller waiting for the background loop looks for a pending interrupt."""


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:  # closed, so the next call starts a fresh loop rather than queueing on a dead one
        loop.close()


class LoopThread:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_until_stopped, args=(loop,), name="nbllm-loop", daemon=True
                )
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
            # Waiting in slices: an interrupt that is not a signal (ipykernel's interrupt_mode
            # "message", _thread.interrupt_main) is only seen between bytecodes.
            while True:
                try:
                    return future.result(timeout=INTERRUPT_POLL_S)
                except concurrent.futures.TimeoutError:
                    if future.done():  # the coroutine's own TimeoutError, not the wait's
                        raise
        except KeyboardInterrupt:
            future.cancel()
            finished.wait(CANCEL_GRACE_S)
            raise


_LOOP_THREAD = LoopThread()


def loop_thread() -> LoopThread:
    return _LOOP_THREAD
