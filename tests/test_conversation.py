"""Conversations and context trimming: what is dropped, what is always kept."""

from __future__ import annotations

import sys
import types

import pytest

from nbllm._calls import tokens
from nbllm._calls.tokens import TokenCounter
from nbllm._cells.conversation import get_conversations, plan_messages, reply_reserve

# One token per character keeps the arithmetic readable; framing adds 4 per message.
CHARS = TokenCounter(len, exact=True)


def turn(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


HISTORY = [turn("a" * 10, "b" * 10), turn("c" * 10, "d" * 10), turn("e" * 10, "f" * 10)]
NEW = [{"role": "user", "content": "q" * 10}]


def test_everything_fits_and_is_sent_in_order() -> None:
    plan = plan_messages("sys", HISTORY, NEW, context_window=1000, max_tokens=100, counter=CHARS)
    assert [m["content"][0] for m in plan.messages] == ["s", "a", "b", "c", "d", "e", "f", "q"]
    assert plan.dropped == [] and plan.fits
    assert plan.tokens == (3 + 4) + 6 * 14 + 14


def test_oldest_turns_are_dropped_first_and_system_and_newest_are_kept() -> None:
    # system 7 + new 14 = 21 fixed; each turn costs 28; limit 80 keeps two turns.
    plan = plan_messages("sys", HISTORY, NEW, context_window=100, max_tokens=20, counter=CHARS)
    assert plan.limit == 80
    assert [m["content"][0] for m in plan.messages] == ["s", "c", "d", "e", "f", "q"]
    assert [m["content"][0] for m in plan.dropped] == ["a", "b"]
    assert plan.dropped_turns == 1
    assert "dropped the 1 oldest turn" in plan.summary()


def test_a_prompt_too_long_for_the_window_is_kept_but_reported() -> None:
    huge = [{"role": "user", "content": "x" * 500}]
    plan = plan_messages("sys", HISTORY, huge, context_window=200, max_tokens=50, counter=CHARS)
    assert plan.messages[0]["role"] == "system" and plan.messages[-1] is huge[0]
    assert len(plan.messages) == 2 and plan.dropped_turns == 3
    assert not plan.fits


def test_unknown_window_sends_everything() -> None:
    plan = plan_messages(None, HISTORY, NEW, context_window=None, max_tokens=None, counter=CHARS)
    assert len(plan.messages) == 7 and plan.limit is None and plan.fits


def test_tool_messages_stay_with_their_turn() -> None:
    tool_turn = [
        {"role": "user", "content": "u" * 10},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "1", "content": "r" * 10},
        {"role": "assistant", "content": "done"},
    ]
    plan = plan_messages(
        None, [tool_turn, turn("x", "y")], NEW, context_window=60, max_tokens=10, counter=CHARS
    )
    roles = [m["role"] for m in plan.messages]
    assert "tool" not in roles  # the whole tool turn went, not half of it
    assert roles == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("window", "max_tokens", "expected"), [(8192, None, 1024), (2048, None, 512), (2048, 100, 100)]
)
def test_reply_reserve(window: int, max_tokens: int | None, expected: int) -> None:
    assert reply_reserve(window, max_tokens) == expected


def test_tiktoken_is_used_when_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    class Encoding:
        def encode(self, text: str, disallowed_special: tuple[()] = ()) -> list[int]:
            return [0] * len(text.split())

    fake = types.SimpleNamespace(get_encoding=lambda name: Encoding())
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    tokens._tiktoken_encoder.cache_clear()
    try:
        counter = tokens.default_counter()
        assert counter.exact and counter.count_text("three word text") == 3
    finally:
        tokens._tiktoken_encoder.cache_clear()


def test_estimate_when_tiktoken_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str) -> None:
        raise OSError("no network")

    monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=offline))
    tokens._tiktoken_encoder.cache_clear()
    try:
        counter = tokens.default_counter()
        assert not counter.exact and counter.count_text("x" * 40) == 10
        assert (
            plan_messages(None, [], NEW, context_window=100, max_tokens=10, counter=counter)
            .summary()
            .startswith("~")
        )
    finally:
        tokens._tiktoken_encoder.cache_clear()


def test_conversations_are_named_and_reset() -> None:
    conversations = get_conversations()
    conversations.clear()
    first = conversations.get("research")
    first.system = "be brief"
    first.add_turn(turn("hi", "hello"))
    assert conversations.get("research") is first
    assert [m["role"] for m in first.messages()] == ["system", "user", "assistant"]
    first.reset()
    assert first.messages() == [] and first.system is None
    assert "research" in conversations.names()


def test_thinking_sent_back_counts_when_trimming() -> None:
    """A tool-calling turn keeps its thinking only where it is sent back (DeepSeek), and then it
    takes room in the window like any other text."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    plain = {"role": "assistant", "content": "", "tool_calls": [call]}
    with_thinking = {**plain, "reasoning_content": "t" * 40}
    assert CHARS.message(with_thinking) == CHARS.message(plain) + 40
    result = {"role": "tool", "tool_call_id": "c1", "content": "r"}
    tool_turn = [{"role": "user", "content": "u"}, with_thinking, result]
    without = plan_messages(
        None, [[*tool_turn[:1], plain, result]], NEW, context_window=80, max_tokens=10, counter=CHARS
    )
    assert len(without.messages) == 4  # without its thinking the turn fits
    kept = plan_messages(None, [tool_turn], NEW, context_window=80, max_tokens=10, counter=CHARS)
    assert kept.messages == NEW  # 40 characters of thinking no longer fit beside the new message
    fits = plan_messages(None, [tool_turn], NEW, context_window=130, max_tokens=10, counter=CHARS)
    assert fits.messages[1]["reasoning_content"] == "t" * 40
