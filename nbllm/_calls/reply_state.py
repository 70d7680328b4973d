"""What one attempt has received so far (`ReplyState`), whatever the protocol: text pieces,
thinking, tool calls assembled from their deltas, usage, the finish reason, the end marker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nbllm._calls.results import ToolCall, Usage
from nbllm._calls.wire.think_tags import ThinkTags


class _ToolCallAssembler:
    """Joins streamed tool-call deltas into calls: the id, type and name arrive once (some
    servers repeat them), the arguments as string fragments to concatenate. Deltas go to the
    call their index names, with two exceptions the id decides: a new index that repeats an
    earlier call's id is that call again (LiteLLM's Anthropic Messages stream opens a new
    content block, same id, for every fragment of one call's arguments), and an index that
    arrives with a new id while its call already has another is a second call (servers that
    stream parallel calls all at index 0)."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}
        """Calls by slot, in the order they began."""
        self._slot_of_id: dict[str, int] = {}
        self._slot_of_index: dict[int, int] = {}

    def _new_slot(self, index: int) -> int:
        slot = len(self._calls)
        self._calls[slot] = {"id": "", "name": "", "arguments": ""}
        self._slot_of_index[index] = slot
        return slot

    def add(self, delta: Mapping[str, Any]) -> None:
        index = int(delta.get("index", len(self._slot_of_index)))
        call_id = str(delta.get("id") or "")
        slot = self._slot_of_index.get(index)
        if call_id and call_id in self._slot_of_id:
            slot = self._slot_of_index[index] = self._slot_of_id[call_id]
        elif slot is None or (call_id and self._calls[slot]["id"] not in ("", call_id)):
            slot = self._new_slot(index)  # a first delta, or a second call streamed at the same index
        call = self._calls[slot]
        if call_id:
            call["id"] = call_id
            self._slot_of_id[call_id] = slot
        function = delta.get("function") or {}
        if function.get("name"):
            call["name"] = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a few servers send an object, not a string
            call["arguments"] = json.dumps(arguments)
        elif arguments:
            call["arguments"] += str(arguments)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"])
            for i, c in sorted(self._calls.items())
        ]


MAX_REPORTED_COST = 1e6
"""A reported cost at or past this many dollars for one call is a broken server, not a price."""


@dataclass
class ReplyState:
    """What one attempt has received so far."""

    started: float = field(default_factory=time.perf_counter)
    pieces: list[str] = field(default_factory=list)
    """The reply's text as it arrived (joined once, by `text`: appending to one string per
    token would copy the whole reply each time)."""
    thoughts: list[str] = field(default_factory=list)
    """The thinking as it arrived, apart from the text (joined once, by `reasoning`)."""
    signature: str = ""
    """The thinking's signature (Anthropic Messages), needed to send it back."""
    think_tags: ThinkTags | None = field(default_factory=ThinkTags)
    """Splits ``<think>`` tags off the start of the content; None once the answer has begun."""
    finish_reason: str | None = None
    usage: Usage | None = None
    saw_done: bool = False
    events: int = 0
    """Server-sent events received (0 for an empty stream)."""
    first_token_at: float | None = None
    """When the first thing reached the consumer: thinking, text or a tool call."""
    first_thought_at: float | None = None
    first_answer_at: float | None = None
    """When the first text or tool call (not thinking) arrived."""
    reasoning_tokens: int | None = None
    """The server's count of thinking tokens, when it sent one."""
    reported_cost: float | None = None
    """The call's cost in dollars as the server reported it (see `report_cost`)."""
    request_id: str | None = None
    http_status: int | None = None
    server: str | None = None
    """The response's Server header (``uvicorn`` for llama-cpp-python and other FastAPI servers)."""
    crowded: bool = False
    """Whether another request to the provider started while this one was in flight, or was
    still in flight when it ended (a server that serves one request at a time may have dropped
    this reply for it)."""
    replayed: str | None = None
    """``cassette`` or ``cache`` when the reply was played back from a recording."""
    keep: Callable[[], None] | None = None
    """What keeps this reply in the response cache; the attempt engine calls it only when the
    reply passed every check (a success is earned, and only successes are kept)."""
    tools: _ToolCallAssembler = field(default_factory=_ToolCallAssembler)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def report_cost(self, dollars: object) -> None:
        """Take a cost the server reported (``usage.cost``, or a gateway's header: see
        `client.exchange`). Only a sane number of dollars is trusted; anything else leaves the
        cost to the model's price."""
        if (
            isinstance(dollars, int | float)
            and not isinstance(dollars, bool)
            and 0 <= dollars < MAX_REPORTED_COST
        ):
            self.reported_cost = float(dollars)

    @property
    def reasoning(self) -> str:
        return "".join(self.thoughts).strip()

    def thought(self, text: str, now: float) -> None:
        self.thoughts.append(text)
        if self.first_thought_at is None:
            self.first_thought_at = now
            if self.first_token_at is None:
                self.first_token_at = now

    def answered(self, now: float) -> None:
        """Note the first text or tool call."""
        if self.first_answer_at is None:
            self.first_answer_at = now
            if self.first_token_at is None:
                self.first_token_at = now

    @property
    def thinking_s(self) -> float | None:
        """From the first thought to the first answer (or to now, if none came)."""
        if self.first_thought_at is None:
            return None
        return (self.first_answer_at or time.perf_counter()) - self.first_thought_at

    @property
    def shown(self) -> bool:
        """Whether content reached the consumer (after which a retry would repeat it)."""
        return self.first_token_at is not None

    @property
    def complete(self) -> bool:
        return self.saw_done or self.finish_reason is not None
