"""Reasoning models: every wire shape of thinking (streamed and whole, split at every
character and every byte), `<think>` tags, effort in each provider's shape, the budget trap,
DeepSeek's tool loop, history, and `%%chat` through a real IPython shell."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import nbllm
from nbllm import ProviderConfig, ReasoningEvent, TokenEvent, get_store
from nbllm._calls.wire.reasoning import effort_fields, style_for
from nbllm._calls.wire.think_tags import ThinkTags
from nbllm._views.tables import HistoryTable
from nbllm.testing import REASONING_SHAPES, ScriptedToolCall, serve
from tests.helpers import failed_cell

THINKING = "Two plus two: add them. <b>Four</b>, not 5."
ANSWER = "The answer is 4."


def register(url: str, name: str = "r", **fields: Any) -> str:
    models = {"m": {"context_window": 100_000, "capabilities": ["reasoning", "tools"]}}
    get_store().add_provider(ProviderConfig(name=name, url=url, models=models, **fields), replace=True)
    return f"{name}/m"


# -- <think> tags ----------------------------------------------------------------


def split_feed(pieces: list[str]) -> tuple[str, str]:
    tags, thinking, answer = ThinkTags(), [], []
    for piece in pieces:
        thought, text = tags.feed(piece)
        thinking.append(thought)
        answer.append(text)
    thought, text = tags.close()
    return "".join([*thinking, thought]), "".join([*answer, text])


TAGGED = "\n<think>\nweigh it\n</think>\n\nYes. A literal <think> stays, as does </think>."


def test_think_tags_split_the_same_at_every_one_and_two_cut_points() -> None:
    expected = ("weigh it\n", "Yes. A literal <think> stays, as does </think>.")
    cuts = range(1, len(TAGGED))
    for a, b in itertools.chain(((c, c) for c in cuts), itertools.combinations(cuts, 2)):
        pieces = [TAGGED[:a], TAGGED[a:b], TAGGED[b:]]
        assert split_feed(pieces) == expected, pieces


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["Hello <think>x</think>"], ("", "Hello <think>x</think>")),  # not at the start: answer
        (["<thi", "nk>a</th", "ink>b"], ("a", "b")),
        (["<thi"], ("", "<thi")),  # only the start of a tag: it was the answer
        (["  ", "\n"], ("", "  \n")),
        (["<think>never closed, out of tokens"], ("never closed, out of tokens", "")),
        (["<think></think>", "Direct."], ("", "Direct.")),
        (["<thinking>is not the tag"], ("", "<thinking>is not the tag")),
    ],
)
def test_think_tags_edge_cases(pieces: list[str], expected: tuple[str, str]) -> None:
    assert split_feed(pieces) == expected


# -- every wire shape, through a real HTTP stack ----------------------------------


@pytest.mark.parametrize("shape", REASONING_SHAPES)
@pytest.mark.parametrize("chunk_chars", [None, 1])
async def test_each_shape_streams_thinking_apart_from_the_answer(shape: str, chunk_chars: int | None) -> None:
    with serve(reply=ANSWER, reasoning=THINKING, reasoning_shape=shape, chunk_chars=chunk_chars) as server:
        model = register(server.base_url)
        events = [e async for e in nbllm.astream("2+2?", model)]
    kinds = [type(e).__name__ for e in events]
    thoughts = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert thoughts.strip() == THINKING and text == ANSWER
    assert kinds.index("TokenEvent") > kinds.index("ReasoningEvent")  # thinking first
    assert "ReasoningEvent" not in kinds[kinds.index("TokenEvent") :]
    result = events[-1].result  # type: ignore[union-attr]
    assert result.reasoning == THINKING and result.text == ANSWER
    assert result.usage.reasoning_tokens > 0 and not result.usage.reasoning_estimated  # the server's count
    assert result.usage.completion_tokens > result.usage.reasoning_tokens
    assert result.thinking_s is not None and result.thinking_s >= 0
    assert "thinking +" in result.footer() and "thought" in result.footer()


@pytest.mark.parametrize("shape", REASONING_SHAPES)
def test_each_shape_whole(shape: str) -> None:
    with serve(reply=ANSWER, reasoning=THINKING, reasoning_shape=shape) as server:
        result = nbllm.chat("2+2?", register(server.base_url), stream=False)
    assert (result.reasoning, result.text) == (THINKING, ANSWER)
    assert result.thinking_s is None  # a whole reply does not say how long the model thought
    assert result.usage.reasoning_tokens > 0


@pytest.mark.parametrize("framing", ["bytes", "body"])
def test_think_tags_split_across_network_reads(framing: str) -> None:
    with serve(reply=ANSWER, reasoning=THINKING, reasoning_shape="think_tags", framing=framing) as server:
        result = nbllm.chat("2+2?", register(server.base_url))
    assert (result.reasoning, result.text) == (THINKING, ANSWER)


def test_a_reply_without_thinking_has_none() -> None:
    with serve(reply="Plain.") as server:
        result = nbllm.chat("hi", register(server.base_url))
    assert (result.text, result.reasoning, result.thinking_s) == ("Plain.", "", None)
    assert result.usage.reasoning_tokens == 0
    assert "thinking" not in result.footer()


def sse(*chunks: dict[str, Any]) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


@respx.mock
def test_openrouter_details_are_not_counted_twice_and_encrypted_parts_are_skipped() -> None:
    url = "http://or.test/v1"
    body = sse(
        delta(reasoning="Think ", reasoning_details=[{"type": "reasoning.text", "text": "Think "}]),
        delta(reasoning_details=[{"type": "reasoning.summary", "summary": "hard."}]),
        delta(reasoning_details=[{"type": "reasoning.encrypted", "data": "opaque"}]),
        delta(content="Done."),
        FINISH,
    )
    respx.post(f"{url}/chat/completions").mock(return_value=httpx.Response(200, content=body))
    result = nbllm.chat("x", register(url))
    assert (result.reasoning, result.text) == ("Think hard.", "Done.")
    assert result.usage.reasoning_estimated  # the server sent no usage: nbllm counted


@respx.mock
def test_thinking_of_the_wrong_type_is_a_protocol_error_that_keeps_what_came() -> None:
    url = "http://bad.test/v1"
    body = sse(delta(reasoning_content="fine "), delta(reasoning_content=5), FINISH)
    respx.post(f"{url}/chat/completions").mock(return_value=httpx.Response(200, content=body))
    with pytest.raises(nbllm.ProtocolError, match="reasoning is int") as caught:
        nbllm.chat("x", register(url))
    assert caught.value.result is not None and caught.value.result.reasoning == "fine"
    assert nbllm.history()[-1].status == "error"


# -- effort --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "effort", "fields"),
    [
        ("openai", "low", {"reasoning_effort": "low"}),
        ("openai", "none", {"reasoning_effort": "none"}),
        ("openrouter", "high", {"reasoning": {"effort": "high"}}),
        ("deepseek", "medium", {"thinking": {"type": "enabled"}, "reasoning_effort": "medium"}),
        ("deepseek", "none", {"thinking": {"type": "disabled"}}),
        ("template", "low", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "low"}),
        ("template", "none", {"chat_template_kwargs": {"enable_thinking": False}}),
    ],
)
def test_effort_is_sent_in_each_styles_shape(style: str, effort: str, fields: dict[str, Any]) -> None:
    assert effort_fields(style, effort) == fields
    with serve(reply="ok") as server:
        nbllm.chat("x", register(server.base_url, reasoning_style=style), effort=effort)
        sent = server.requests[-1].body
    assert {k: sent[k] for k in fields} == fields


@pytest.mark.parametrize(
    ("url", "style"),
    [
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://eu.openrouter.ai/api/v1", "openrouter"),
        ("https://notopenrouter.ai/v1", "openai"),
        ("http://127.0.0.1:8000/v1", "openai"),
    ],
)
def test_the_style_defaults_by_host(url: str, style: str) -> None:
    assert style_for(ProviderConfig(name="p", url=url)) == style
    assert style_for(ProviderConfig(name="p", url=url, reasoning_style="template")) == "template"


def test_extra_body_still_has_the_last_word_and_bad_values_are_refused() -> None:
    with serve(reply="ok") as server:
        model = register(server.base_url, extra_body={"reasoning_effort": "high"})
        nbllm.chat("x", model, effort="low")
        assert server.requests[-1].body["reasoning_effort"] == "high"
        with pytest.raises(nbllm.PromptError, match="effort should be one of none, low, medium, high"):
            nbllm.chat("x", model, effort="max")
        assert len(server.requests) == 1
    with pytest.raises(nbllm.ConfigError, match="reasoning_style 'anthropic' is not one of"):
        ProviderConfig(name="p", url="http://h/v1", reasoning_style="anthropic")


# -- the budget trap -----------------------------------------------------------------


def test_thinking_that_uses_up_max_tokens_says_so_keeps_the_thinking_and_is_not_retried() -> None:
    with serve(reply=ANSWER, reasoning="one two three four five six seven eight") as server:
        model = register(server.base_url)
        with pytest.raises(nbllm.ThinkingBudgetError) as caught:
            nbllm.chat("x", model, max_tokens=5)
        assert len(server.requests) == 1  # the same request would think just as long
        error = caught.value
        assert str(error).startswith("r/m spent all 5 tokens thinking and wrote no answer")
        assert "raise --max-tokens" in str(error)
        assert error.result is not None and error.result.status == "incomplete"
        assert error.result.reasoning == "one two three four five"
        assert nbllm.history()[-1].status == "incomplete"
        assert nbllm.history()[-1].reasoning_tokens == 5

        cut = "spent 8 of its 10 tokens thinking, and its answer was cut off"
        with pytest.raises(nbllm.ThinkingBudgetError, match=cut):
            nbllm.chat("x", model, max_tokens=10)
        assert nbllm.last().text == "The answer "  # the cut answer is kept too


def test_a_cut_answer_without_thinking_is_not_a_budget_trap() -> None:
    with serve(reply="one two three four") as server:
        result = nbllm.chat("x", register(server.base_url), max_tokens=2)
    assert (result.status, result.finish_reason, result.text) == ("ok", "length", "one two ")


# -- conversations and the DeepSeek tool loop ----------------------------------------


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.fixture
def chat_shell(ip: Any) -> Iterator[Any]:
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "final"
    yield ip
    magics.display_mode = "auto"
    ip.user_ns.pop("add", None)


@pytest.mark.parametrize(("style", "sent_back"), [("deepseek", True), ("openai", False)])
def test_tool_loop_sends_thinking_back_only_where_the_provider_requires_it(
    chat_shell: Any, style: str, sent_back: bool
) -> None:
    ip = chat_shell
    ip.user_ns["add"] = add
    calls = [ScriptedToolCall("add", {"a": 2, "b": 2})]
    with serve(reply="ok", reasoning="I should call add.", tool_calls=calls, tool_reply="It is 4.") as server:
        register(server.base_url, name="ds", reasoning_style=style)
        with capture_output():
            ip.run_cell_magic("chat", "ds/m --tools add --new -c deepseek-loop", "What is 2+2?")
            ip.run_cell_magic("chat", "ds/m -c deepseek-loop", "And again?")
        second, third = server.requests[1].body, server.requests[2].body
    tool_turn = second["messages"][1]
    assert tool_turn["role"] == "assistant" and tool_turn["tool_calls"]
    assert ("reasoning_content" in tool_turn) is sent_back
    if sent_back:
        assert tool_turn["reasoning_content"] == "I should call add."
        assert third["messages"][1].get("reasoning_content") == "I should call add."  # every later request
    final_turns = [m for m in third["messages"] if m["role"] == "assistant" and not m.get("tool_calls")]
    assert all("reasoning_content" not in m for m in final_turns)  # plain answers never carry it
    assert nbllm.last().reasoning.startswith("I should call add.")


# -- %%chat ---------------------------------------------------------------------------


def test_effort_needs_the_reasoning_flag_before_anything_is_sent(chat_shell: Any) -> None:
    ip = chat_shell
    with serve(reply="ok") as server:
        get_store().add_provider(
            ProviderConfig(name="plain", url=server.base_url, models={"m": {}}), replace=True
        )
        refused = failed_cell(ip, "plain/m --effort low", "hi")
        assert "not flagged for reasoning" in refused and "--caps reasoning" in refused
        assert server.requests == []
        with pytest.raises(UsageError, match="invalid choice: 'extreme'"):
            ip.run_cell_magic("chat", "plain/m --effort extreme", "hi")
        register(server.base_url, name="thinker")
        with capture_output():
            ip.run_cell_magic("chat", "thinker/m --effort none", "hi")
        assert server.requests[-1].body["reasoning_effort"] == "none"


@pytest.mark.parametrize("show", [False, True])
def test_final_frame_shows_the_thinking_collapsed_unless_asked(chat_shell: Any, show: bool) -> None:
    ip = chat_shell
    with serve(reply=ANSWER, reasoning=THINKING, reasoning_shape="think_tags") as server:
        register(server.base_url)
        with capture_output() as captured:
            ip.run_cell_magic("chat", "r/m --new" + (" --show-thinking" if show else ""), "2+2?")
    (output,) = captured.outputs
    markdown, plain = output.data["text/markdown"], output.data["text/plain"]
    assert markdown.startswith("<details open>" if show else "<details><summary>")
    assert "&lt;b&gt;Four&lt;/b&gt;" in markdown  # escaped: no tag in the thinking can end the block
    assert markdown.index("</details>") < markdown.index(ANSWER)
    assert (THINKING in plain) is show
    assert output.metadata["nbllm"]["reasoning_tokens"] > 0


def test_terminal_shows_thinking_dimmed_only_when_asked(chat_shell: Any, capsys: Any) -> None:
    ip = chat_shell
    ip.magics_manager.registry["ChatMagics"].display_mode = "terminal"
    with serve(reply=ANSWER, reasoning=THINKING) as server:
        register(server.base_url)
        ip.run_cell_magic("chat", "r/m --new", "2+2?")
        quiet = capsys.readouterr().out
        ip.run_cell_magic("chat", "r/m --new --show-thinking", "2+2?")
        loud = capsys.readouterr().out
    assert quiet.startswith(f"[thinking\N{HORIZONTAL ELLIPSIS}]\n{ANSWER}") and THINKING not in quiet
    assert "\x1b[2m" in loud and "Two plus two" in loud and f"[answer]\n{ANSWER}" in loud
    assert "thought" in loud and "thinking +" in loud  # the footer


def test_history_table_shows_thinking_tokens_and_time(chat_shell: Any) -> None:
    with serve(reply=ANSWER, reasoning=THINKING) as server:
        nbllm.chat("x", register(server.base_url))
    record = nbllm.history()[-1]
    assert record.reasoning_tokens > 0 and record.thinking_s is not None
    table = repr(HistoryTable([record]))
    assert "thinking" in table and f"{record.reasoning_tokens} in " in table


@respx.mock
def test_a_server_that_refuses_the_effort_field_gets_a_hint_naming_the_style() -> None:
    url = "http://strict.test/v1"
    refusal = {"detail": "Unexpected fields in the request: {'thinking'}"}  # transformers serve's words
    respx.post(f"{url}/chat/completions").mock(return_value=httpx.Response(422, json=refusal))
    with pytest.raises(nbllm.BadRequestError) as caught:
        nbllm.chat("x", register(url, reasoning_style="deepseek"), effort="low")
    hint = caught.value.hint or ""
    assert "refused 'thinking'" in hint and "reasoning style (deepseek)" in hint
    assert "--reasoning-style" in hint


def test_reasoning_style_is_set_by_the_magic_shown_and_saved(chat_shell: Any, tmp_path: Any) -> None:
    ip = chat_shell
    line = "add qw --url http://127.0.0.1:9/v1 --model m --caps reasoning --reasoning-style template"
    ip.run_line_magic("llm_provider", line)
    config = get_store().provider("qw")
    assert config.reasoning_style == "template" and config.models["m"].capabilities.reasoning
    with capture_output() as shown:
        ip.run_line_magic("llm_provider", "show qw")
    assert re.search(r"reasoning style +template", shown.outputs[0].data["text/plain"])
    path = tmp_path / "providers.yaml"
    ip.run_line_magic("llm_provider", f"save {path}")
    assert "reasoning_style: template" in path.read_text()
    get_store().remove_provider("qw")
    ip.run_line_magic("llm_provider", f"load {path}")
    assert get_store().provider("qw").reasoning_style == "template"
    with pytest.raises(UsageError, match="invalid choice: 'claude'"):
        ip.run_line_magic("llm_provider", "add qw2 --url http://127.0.0.1:9/v1 --reasoning-style claude")


async def test_the_endpoint_check_counts_a_token_of_thinking_as_an_answer() -> None:
    from nbllm._calls.doctor import diagnose

    with serve(reasoning="Let me think about this.", models=("thinker",)) as server:
        models = {"thinker": {"capabilities": "reasoning"}}
        nbllm.get_store().add_provider(nbllm.ProviderConfig(name="t", url=server.base_url, models=models))
        report = await diagnose(nbllm.get_store(), "t/thinker")
    chat = next(f for f in report.findings if f.check == "chat")
    assert (chat.verdict, chat.detail) == ("ok", "one-token streaming call answered (the token was thinking)")
    assert report.ok
