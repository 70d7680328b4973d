"""A dedicated event loop on a background thread, for running async calls from
synchronous code, including from inside a running kernel whose own loop must not
be re-entered (no nest_asyncio: under ipykernel 7 it drops queued cells)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Coroutine
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


class DirectUi:
    """UI work for a coroutine that runs on the UI's own thread (a kernel's top-level await)."""

    def post(self, action: Callable[..., Any], *args: Any) -> None:
        action(*args)

    async def call(self, action: Callable[[], T]) -> T:
        return action()


class QueueUi:
    """UI work for a coroutine on the background loop: actions are queued for the thread that
    called `run_with_ui`, which runs them (display updates and user code stay on that thread)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()

    def post(self, action: Callable[..., Any], *args: Any) -> None:
        self.queue.put(functools.partial(action, *args))

    async def call(self, action: Callable[[], T]) -> T:
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(action())
            except Exception as exc:  # handed back to the awaiting coroutine
                done.set_exception(exc)
            # A KeyboardInterrupt stays on this thread: run_with_ui cancels the coroutine.
            # (Handed to the loop, it would escape the task and stop the background loop.)

        self.queue.put(run)
        return await asyncio.wrap_future(done)

    def drain(self) -> None:
        while True:
            try:
                action = self.queue.get_nowait()
            except queue.Empty:
                return
            action()


Ui = DirectUi | QueueUi


def run_with_ui(make: Callable[[Ui], Coroutine[Any, Any, T]], tick: Callable[[], None], tick_s: float) -> T:
    """Run ``make(ui)`` on the background loop while this thread performs its UI actions and
    calls `tick` every `tick_s`. An interrupt cancels the coroutine, performs the UI actions
    its cleanup queued (the final render), then re-raises `KeyboardInterrupt`."""
    ui = QueueUi()
    finished = threading.Event()

    async def tracked() -> T:
        try:
            return await make(ui)
        finally:
            finished.set()

    future = loop_thread().submit(tracked())
    try:
        while not (future.done() and ui.queue.empty()):
            try:
                action = ui.queue.get(timeout=tick_s)
            except queue.Empty:
                tick()
                continue
            action()
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        deadline = time.monotonic() + CANCEL_GRACE_S
        while not finished.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                ui.queue.get(timeout=0.01)()
        ui.drain()
        raise
