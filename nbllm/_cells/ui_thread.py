"""Where a cell's UI work runs while its call runs: on the caller's own thread (`DirectUi`, a
kernel's top-level await), or queued from the background event loop to the thread that waits
for it (`QueueUi`, `run_with_ui`), so display updates and user code (tools) never run on the
background loop. Beside the `View` protocol, which is what that work draws through."""

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

from nbllm._calls.loop_thread import CANCEL_GRACE_S, loop_thread

T = TypeVar("T")


TEXT_BATCH_S = 0.01
"""After drawing a batch of streamed text, the UI thread lets the next one gather this long: at
2,000 tokens a second, waking once per token cost more kernel CPU than drawing them."""


class DirectUi:
    """UI work for a coroutine that runs on the UI's own thread (a kernel's top-level await)."""

    def post(self, action: Callable[..., Any], *args: Any) -> None:
        action(*args)

    def post_text(self, action: Callable[[str], Any], text: str) -> None:
        action(text)

    async def call(self, action: Callable[[], T]) -> T:
        return action()


class QueueUi:
    """UI work for a coroutine on the background loop: actions are queued for the thread that
    called `run_with_ui`, which runs them (display updates and user code stay on that thread)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self._batch: _TextBatch | None = None

    def post(self, action: Callable[..., Any], *args: Any) -> None:
        self._batch = None  # text streamed after this action is drawn after it
        self.queue.put(functools.partial(action, *args))

    def post_text(self, action: Callable[[str], Any], text: str) -> None:
        """Like `post`, but pieces of text for the same action that arrive before the UI thread
        gets to the first are drawn together, in one call."""
        batch = self._batch
        if batch is not None and batch.action == action and batch.add(text):
            return
        self._batch = batch = _TextBatch(action, text)
        self.queue.put(batch.run)

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


class _TextBatch:
    """Streamed text waiting for the UI thread: added to by the loop, run once by the UI."""

    def __init__(self, action: Callable[[str], Any], text: str) -> None:
        self.action = action
        self.pieces = [text]
        self.lock = threading.Lock()
        self.done = False

    def add(self, text: str) -> bool:
        """Add `text`; False when the batch was drawn already (start a new one)."""
        with self.lock:
            if self.done:
                return False
            self.pieces.append(text)
            return True

    def run(self) -> None:
        with self.lock:
            self.done = True
            text = "".join(self.pieces)
        self.action(text)
        time.sleep(TEXT_BATCH_S)


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
