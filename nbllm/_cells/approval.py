"""Approval before a tool runs (``%%chat --approve``), and the record of every tool call.

A tool declared read-only (``@nbllm.tool(read_only=True)``) runs at once. Any other waits for
the user, by the cell's mode:

- ``ask`` (the default): an `Approver` asks (the widget in a notebook, a prompt in terminal
  IPython); with nobody to answer (``Run All``, nbconvert), the wait ends in denial at the
  timeout, or at once where nothing can be asked;
- ``auto``: every tool runs, as before approval existed;
- ``never``: only read-only tools run.

A denial goes back to the model as the tool's result, so the conversation goes on. Every
call, run or refused, is a history record (``kind="tool"``) with its arguments, secrets
masked, how it was allowed, and the size of what the model got back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Literal, Protocol

from nbllm._calls.history import CallRecord, get_history
from nbllm._calls.results import Status, ToolCall
from nbllm._cells.tools import Tool
from nbllm._cells.ui_thread import Ui
from nbllm._providers.secret_registry import session_secrets
from nbllm._providers.secret_text import mask_values

ApprovalMode = Literal["auto", "ask", "never"]
APPROVAL_TIMEOUT_S = 120.0
"""How long a tool call waits for a click before it is denied (``Run All`` never hangs)."""
ARGUMENTS_KEPT = 500
Decision = Literal["approved", "approve-all", "denied", "timeout", "nobody"]

DENIAL_TEXTS: dict[str, str] = {
    "denied": "the user denied this call; do not try it again unless the user asks for it",
    "timeout": "nobody approved this call in time, so it did not run; do not try it again",
    "nobody": "this call needs the user's approval and nobody can give it here, so it did not run",
    "never": "tools that change things are turned off in this cell (--approve never); this one did not run",
}


class Approver(Protocol):
    """Asks the user about one tool call; answers with a `Decision`. `ui` runs what must run on
    the kernel's main thread (a prompt, a widget)."""

    def decide(self, call: ToolCall, tool: Tool, timeout_s: float, ui: Ui) -> Awaitable[Decision]: ...


class ApprovalGate:
    """One cell's approvals: its mode, who asks, and an "approve all" once the user gave it."""

    def __init__(
        self,
        mode: ApprovalMode = "ask",
        approver: Approver | None = None,
        timeout_s: float = APPROVAL_TIMEOUT_S,
    ) -> None:
        self.mode, self.approver, self.timeout_s = mode, approver, timeout_s
        self.all_approved = False

    async def allows(self, call: ToolCall, tool: Tool, ui: Ui) -> tuple[bool, str]:
        """Whether `call` may run, and how that was decided (the record's word, or the key of
        the text the model gets back)."""
        if tool.read_only:
            return True, "read-only"
        if self.mode == "auto" and not tool.always_ask:
            return True, "auto"
        if self.mode == "never":
            return False, "never"
        if self.all_approved:
            return True, "approved (all this cell)"
        if self.approver is None:
            return False, "nobody"
        decision = await self.approver.decide(call, tool, self.timeout_s, ui)
        if decision == "approve-all":
            self.all_approved = True
            return True, "approved (all this cell)"
        return decision == "approved", decision


def record_tool_call(
    call: ToolCall,
    asked_by: str,
    started: float,
    approval: str,
    ran: bool,
    result: str | None,
    ok: bool,
) -> None:
    """Put one tool call in the history: never its result, only its size."""
    arguments = mask_values(call.arguments or "", session_secrets())
    if len(arguments) > ARGUMENTS_KEPT:
        arguments = arguments[:ARGUMENTS_KEPT] + "\N{HORIZONTAL ELLIPSIS}"
    status: Status = "ok" if ran and ok else ("error" if ran else "cancelled")
    get_history().add(
        CallRecord(
            model=f"tool:{call.name}",
            requested=asked_by,
            host="kernel",
            started_at=datetime.now(timezone.utc),
            latency_s=time.perf_counter() - started,
            status=status,
            error_class="ToolError" if ran and not ok else None,
            error_message=(result or "")[:300] if ran and not ok else None,
            kind="tool",
            tool_arguments=arguments,
            approval=approval,
            result_chars=len(result) if result is not None else None,
        )
    )


AskUser = Callable[[str], str]
"""Reads one answer from the user (``input``)."""


class PromptApprover:
    """Terminal IPython (and a kernel cell run without autoawait): a y/n/a prompt. Where no
    prompt can be shown (a kernel with no stdin, as under nbconvert), nobody is asked."""

    def __init__(self, read: AskUser = input) -> None:
        self.read = read

    async def decide(self, call: ToolCall, tool: Tool, timeout_s: float, ui: Ui) -> Decision:
        question = (
            f"The model asks to run {tool.name}({_clip(call.arguments or '', 300)}). "
            "Run it? [y]es / [n]o / [a]ll in this cell: "
        )
        try:
            answer = await ui.call(lambda: self.read(question))
        except (EOFError, OSError, RuntimeError):  # StdinNotImplementedError is a RuntimeError
            return "nobody"
        answer = answer.strip().lower()
        if answer in ("a", "all"):
            return "approve-all"
        return "approved" if answer in ("y", "yes") else "denied"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\N{HORIZONTAL ELLIPSIS}"
