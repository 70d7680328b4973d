"""Named multi-turn conversations and fitting them into a model's context window.

A conversation is a system prompt and a list of *turns*; a turn is the user's
message plus everything the reply added (assistant text, tool calls and tool
results). Trimming drops whole turns, oldest first, so a tool result is never
sent without the call it answers. The system prompt and the newest user
message are always kept.

Tokens are counted by `nbllm._calls.tokens` (tiktoken when it can load, else an
estimate), and the count says which.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nbllm._calls.tokens import Message, TokenCounter, default_counter
from nbllm._constants import REPLY_RESERVE_TOKENS
from nbllm._session import session

Turn = list[Message]
DEFAULT_CONVERSATION = "default"


def reply_reserve(context_window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the reply: the asked maximum, else a quarter of the window (capped)."""
    if max_tokens is not None:
        return max_tokens
    return min(REPLY_RESERVE_TOKENS, context_window // 4)


@dataclass(frozen=True)
class Plan:
    """The messages a call will send, after trimming, and what trimming did."""

    messages: list[Message]
    tokens: int
    exact: bool
    """True when tokens were counted with tiktoken, False for an estimate."""
    limit: int | None
    """Prompt tokens allowed (context window minus reply reserve); None when the window is unknown."""
    dropped: list[Message] = field(default_factory=list)
    dropped_turns: int = 0

    @property
    def fits(self) -> bool:
        return self.limit is None or self.tokens <= self.limit

    def summary(self) -> str:
        mark = "" if self.exact else "~"
        text = f"{mark}{self.tokens} prompt tokens"
        if self.limit is not None:
            text += f" of {self.limit} allowed"
        if self.dropped_turns:
            plural = "s" if self.dropped_turns != 1 else ""
            text += f"; dropped the {self.dropped_turns} oldest turn{plural} ({len(self.dropped)} messages)"
        return text


def plan_messages(
    system: str | None,
    history: Sequence[Turn],
    new_turn: Turn,
    *,
    context_window: int | None,
    max_tokens: int | None,
    counter: TokenCounter | None = None,
) -> Plan:
    """System prompt + as many recent turns as fit + the new turn (always kept)."""
    counter = counter or default_counter()
    head = [{"role": "system", "content": system}] if system else []
    fixed = counter.messages(head) + counter.messages(new_turn)
    if context_window is None:
        messages = head + [m for turn in history for m in turn] + list(new_turn)
        return Plan(messages, counter.messages(messages), counter.exact, None)
    limit = max(0, context_window - reply_reserve(context_window, max_tokens))
    kept: list[Turn] = []
    used = fixed
    for position, turn in enumerate(reversed(history)):
        cost = counter.messages(turn)
        if used + cost > limit:
            older = list(history[: len(history) - position])
            dropped = [m for t in older for m in t]
            return Plan(
                head + [m for t in reversed(kept) for m in t] + list(new_turn),
                used,
                counter.exact,
                limit,
                dropped,
                len(older),
            )
        kept.append(turn)
        used += cost
    return Plan(head + [m for t in reversed(kept) for m in t] + list(new_turn), used, counter.exact, limit)


@dataclass
class Conversation:
    name: str
    system: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def add_turn(self, turn: Turn) -> None:
        self.turns.append([dict(m) for m in turn])

    def reset(self) -> None:
        self.system = None
        self.turns.clear()

    def messages(self) -> list[Message]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [m for turn in self.turns for m in turn]

    def __repr__(self) -> str:
        system = "with a system prompt" if self.system else "no system prompt"
        return f"<Conversation {self.name!r}: {len(self.turns)} turns, {system}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))
        for message in self.messages():
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)[:200]
            printer.break_()
            printer.text(f"  {message['role']}: {(text or '')[:200]}")


class Conversations:
    """The session's conversations by name; `get` creates one on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Conversation] = {}

    def get(self, name: str = DEFAULT_CONVERSATION) -> Conversation:
        with self._lock:
            return self._by_name.setdefault(name, Conversation(name))

    def names(self) -> list[str]:
        with self._lock:
            return list(self._by_name)

    def clear(self) -> None:
        with self._lock:
            self._by_name.clear()


def get_conversations() -> Conversations:
    """The session's conversations."""
    return session().part(Conversations)
