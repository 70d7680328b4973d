"""The small protocol a cell draws through. The cell layer owns it; the views (`_views`)
implement it, so cells never import what draws them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from nbllm._calls.results import ChatResult, StatusEvent, ToolCall


class View(Protocol):
    """What happens to one reply, in order: start, then thinking, tokens, status events and
    tool calls with their results, then exactly one finish (run in a ``finally``)."""

    def start(self) -> None: ...

    def offer_stop(self, stop: Callable[[], object]) -> None:
        """Give the user a way to run `stop` (the call is in flight); a view may ignore it."""

    def reasoning(self, text: str) -> None: ...

    def token(self, text: str) -> None: ...

    def status(self, event: StatusEvent) -> None: ...

    def tool_call(self, call: ToolCall) -> None: ...

    def tool_result(self, call: ToolCall, text: str, ok: bool) -> None: ...

    def finish(
        self, result: ChatResult, error: BaseException | None = None, note: str | None = None
    ) -> None: ...


class MultiView(Protocol):
    """Several replies side by side (``--compare``): one `View` per model, and an end."""

    @property
    def columns(self) -> Sequence[View]: ...

    def finish(self) -> None: ...
