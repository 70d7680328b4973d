"""Wire shapes that must not pass as success (issue 29, item 6), from a server written for
these tests: a Responses reply that did not complete, tool-call arguments for a call never
started, and thinking tags behind a long run of blank events."""

from __future__ import annotations

import json
from typing import Any

import pytest

import nbllm
from nbllm import ProviderConfig
from tests.hostile_server import Reply, chat_events, hostile


def responses_reply(status: str) -> Reply:
    body = {
        "id": "resp_1",
        "status": status,
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "A half answer"}]}],
        "usage": {"input_tokens": 3, "output_tokens": 3},
    }
    return 200, "application/json", json.dumps(body).encode()


@pytest.mark.parametrize("status", ["failed", "cancelled", "in_progress", "queued"])
def test_a_responses_reply_that_did_not_complete_is_an_error(status: str) -> None:
    with hostile(lambda *_: responses_reply(status)) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="r", url=server.base_url, auth="none", api="responses", models=["m"])
        )
        with pytest.raises(nbllm.StreamError, match=status):
            nbllm.chat("q", "r/m", stream=False)
        assert server.seen[-1].path.endswith("/responses")
    assert nbllm.history()[-1].status == "error"


def test_a_completed_responses_reply_is_still_a_success() -> None:
    with hostile(lambda *_: responses_reply("completed")) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="r", url=server.base_url, auth="none", api="responses", models=["m"])
        )
        assert nbllm.chat("q", "r/m", stream=False).text == "A half answer"


def test_arguments_for_a_tool_call_never_started_are_a_protocol_error() -> None:
    stray = {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 3, "function": {"arguments": '{"x": 1}'}}]}}
        ]
    }
    events = [
        json.dumps(stray),
        json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        "[DONE]",
    ]
    with hostile(lambda *_: (200, "text/event-stream", events)) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="t", url=server.base_url, auth="none", models={"m": {"caps": "tools"}})
        )
        with pytest.raises(nbllm.ProtocolError, match="never named"):
            nbllm.chat("q", "t/m", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert nbllm.history()[-1].status == "error"


def test_many_blank_events_before_thinking_tags_still_split_the_thinking_off() -> None:
    blanks = [json.dumps({"choices": [{"index": 0, "delta": {"content": " "}}]})] * 20_000
    events = [*blanks, *chat_events("<think>hmm</think>The answer.")]

    def answer(path: str, headers: dict[str, str], body: Any) -> Reply:
        return 200, "text/event-stream", events

    with hostile(answer) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="b", url=server.base_url, auth="none", models=["m"])
        )
        result = nbllm.chat("q", "b/m")
    assert result.text == "The answer." and result.reasoning == "hmm"


def test_two_calls_streamed_at_one_index_stay_two_when_their_ids_differ() -> None:
    """Issue 31: some servers stream parallel tool calls all at index 0."""
    from nbllm._calls.reply_state import _ToolCallAssembler

    assembler = _ToolCallAssembler()
    for delta in (
        {"index": 0, "id": "call_a", "function": {"name": "read_file", "arguments": '{"path"'}},
        {"index": 0, "function": {"arguments": ': "a.txt"}'}},
        {"index": 0, "id": "call_b", "function": {"name": "delete_file", "arguments": '{"path": "b"}'}},
    ):
        assembler.add(delta)
    calls = assembler.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "read_file", '{"path": "a.txt"}'),
        ("call_b", "delete_file", '{"path": "b"}'),
    ]
