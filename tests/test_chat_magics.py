"""`%%chat` and `%llm_history` through a real IPython shell against the loopback server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from traitlets import TraitError

import nbllm
from nbllm.testing import ScriptedToolCall, serve
from tests.helpers import SENTINEL_KEY, failed_cell


@pytest.fixture
def server(ip: Any) -> Iterator[Any]:
    with serve(reply="Paris is the capital.", api_key=SENTINEL_KEY) as running:
        ip.user_ns["TEST_KEY_VALUE"] = SENTINEL_KEY
        ip.run_line_magic(
            "llm_provider",
            f"add loop --url {running.base_url} --key-env NBLLM_TEST_CHAT_KEY "
            "--model test-model=4096 --model plain-model=4096 --caps tools,json",
        )
        ip.run_line_magic("llm_provider", "model loop set plain-model --caps no-tools,no-json")
        ip.run_line_magic("llm_provider", "default loop/test-model")
        yield running
    ip.user_ns.pop("TEST_KEY_VALUE", None)


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_CHAT_KEY", SENTINEL_KEY)


@pytest.fixture(autouse=True)
def terminal_mode(ip: Any) -> Iterator[None]:
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "terminal"
    yield
    magics.display_mode = "auto"


def chat_requests(server: Any) -> list[Any]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def test_chat_streams_and_continues_the_conversation(ip: Any, server: Any, capsys: Any) -> None:
    ip.run_cell_magic("chat", "", "What is the capital of France?")
    out = capsys.readouterr().out
    assert out.startswith("Paris is the capital.\n[loop/test-model · first token")
    ip.run_cell_magic("chat", "", "And of Italy?")
    second = chat_requests(server)[-1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "Paris is the capital." and second[2]["content"] == "And of Italy?"
    # Issue 35, item 8: a cell that continues earlier ones says so (the first said nothing).
    assert "turn" not in out
    assert "(turn 2 of conversation 'default', " in capsys.readouterr().out
    assert nbllm.last() is not None and nbllm.last().text == "Paris is the capital."


def test_new_system_and_named_conversations(ip: Any, server: Any) -> None:
    ip.run_cell_magic("chat", '--system "Answer in one word."', "first")
    ip.run_cell_magic("chat", "-c other", "separate")
    assert [m["role"] for m in chat_requests(server)[-1].body["messages"]] == ["user"]
    ip.run_cell_magic("chat", "", "second")
    messages = chat_requests(server)[-1].body["messages"]
    assert messages[0] == {"role": "system", "content": "Answer in one word."}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    ip.run_cell_magic("chat", "--new", "fresh")
    assert chat_requests(server)[-1].body["messages"] == [{"role": "user", "content": "fresh"}]


def test_output_variable_and_interpolation(ip: Any, server: Any) -> None:
    ip.user_ns["city"] = {"name": "Lyon"}
    ip.run_cell_magic(
        "chat",
        "-o answer -t 0.2 --max-tokens 50 --seed 7",
        'Tell me about {city[name]} {{not this}} {"a": 1}',
    )
    body = chat_requests(server)[-1].body
    assert body["messages"][-1]["content"] == 'Tell me about Lyon {not this} {"a": 1}'
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50 and body["seed"] == 7
    answer = ip.user_ns["answer"]
    assert isinstance(answer, nbllm.ChatResult) and answer.status == "ok"


def test_no_interp_sends_the_cell_as_written(ip: Any, server: Any) -> None:
    ip.run_cell_magic("chat", "--no-interp", "keep {undefined_name} as is")
    assert chat_requests(server)[-1].body["messages"][-1]["content"] == "keep {undefined_name} as is"


def test_unknown_name_is_a_usage_error_and_sends_nothing(ip: Any, server: Any) -> None:
    with pytest.raises(UsageError, match="undefined_thing"):
        ip.run_cell_magic("chat", "", "what about {undefined_thing}?")
    assert chat_requests(server) == []


def test_empty_cell_and_bad_options_are_usage_errors(ip: Any, server: Any) -> None:
    with pytest.raises(UsageError, match="no prompt"):
        ip.run_cell_magic("chat", "", "   \n")
    with pytest.raises(UsageError, match="variable name"):
        ip.run_cell_magic("chat", "-o 1x", "hi")
    assert re.search(r"unknown|did you mean|no-such", failed_cell(ip, "loop/no-such", "hi"))
    assert chat_requests(server) == []


@pytest.mark.parametrize(
    ("line", "flag"),
    [("loop/plain-model --tools helper", "'tools'"), ("loop/plain-model --json", "'json'")],
)
def test_capability_preflight_refuses_before_sending(ip: Any, server: Any, line: str, flag: str) -> None:
    ip.user_ns["helper"] = lambda: None
    ip.user_ns["helper"].__name__ = "helper"
    message = failed_cell(ip, line, "hi")
    assert flag in message and "%llm_provider model loop set plain-model --caps" in message
    assert chat_requests(server) == []


def test_image_to_a_non_vision_model_is_refused(ip: Any, server: Any) -> None:
    class Picture:
        def _repr_png_(self) -> bytes:
            return b"png-bytes"

    ip.user_ns["picture"] = Picture()
    assert "'vision'" in failed_cell(ip, "", "Describe {picture}")
    assert chat_requests(server) == []


def test_json_mode_puts_the_parsed_object_in_the_variable(ip: Any, server: Any) -> None:
    server.reply = '{"capital": "Paris", "population_m": 2.1}'
    ip.run_cell_magic("chat", "--json -o data", "Capital of France as JSON")
    assert ip.user_ns["data"] == {"capital": "Paris", "population_m": 2.1}
    assert chat_requests(server)[-1].body["response_format"] == {"type": "json_object"}
    assert nbllm.last().parsed == ip.user_ns["data"]


def test_invalid_json_reply_is_an_error_but_the_text_is_kept(ip: Any, server: Any) -> None:
    server.reply = "Sure! Here is JSON: {oops"
    ip.user_ns.pop("bad", None)
    assert "not valid JSON" in failed_cell(ip, "--json -o bad", "JSON please")
    assert "bad" not in ip.user_ns
    assert nbllm.last().text == "Sure! Here is JSON: {oops"


def test_tool_round_runs_the_function_and_sends_the_result_back(ip: Any, server: Any, capsys: Any) -> None:
    seen: list[str] = []

    def get_weather(city: str) -> dict[str, Any]:
        """Current weather for a city."""
        seen.append(city)
        return {"city": city, "temp_c": 21}

    ip.user_ns["get_weather"] = get_weather
    server.tool_calls = [ScriptedToolCall("get_weather", {"city": "Oslo"})]
    server.tool_reply = "It is 21 C in Oslo."
    ip.run_cell_magic("chat", "--tools get_weather -o result", "Weather in Oslo?")
    assert seen == ["Oslo"]
    first, second = chat_requests(server)[-2:]
    assert first.body["tools"][0]["function"]["name"] == "get_weather"
    tool_message = second.body["messages"][-1]
    assert tool_message["role"] == "tool" and json.loads(tool_message["content"]) == {
        "city": "Oslo",
        "temp_c": 21,
    }
    calling_turn = second.body["messages"][-2]
    assert calling_turn["tool_calls"][0]["function"]["name"] == "get_weather"
    assert calling_turn["content"] == ""  # not null or absent: llama-cpp-python's server refuses both
    result = ip.user_ns["result"]
    assert result.text == "It is 21 C in Oslo." and [c.name for c in result.tool_calls] == ["get_weather"]
    out = capsys.readouterr().out
    assert "[tool] get_weather" in out and '"temp_c": 21' in out


def test_tool_errors_go_back_to_the_model(ip: Any, server: Any) -> None:
    def explode(n: int) -> int:
        """Always fails."""
        raise RuntimeError("the sensor is offline")

    ip.user_ns["explode"] = explode
    server.tool_calls = [ScriptedToolCall("explode", {"n": 1})]
    ip.run_cell_magic("chat", "--tools explode", "try it")
    assert (
        chat_requests(server)[-1].body["messages"][-1]["content"]
        == "error: RuntimeError: the sensor is offline"
    )


def test_tool_rounds_are_bounded(ip: Any, server: Any) -> None:
    calls: list[int] = []

    def again(n: int) -> int:
        """Ask again."""
        calls.append(n)
        return n

    ip.user_ns["again"] = again
    # The model asks for the tool every time, even after seeing results.
    server.reply = lambda body: [ScriptedToolCall("again", {"n": len(body["messages"])})]
    assert "stopped after 2 tool rounds" in failed_cell(
        ip, "--tools again --max-tool-rounds 2", "loop forever"
    )
    assert len(calls) == 2 and len(chat_requests(server)) == 3


def test_dry_run_shows_the_request_with_the_key_masked(ip: Any, server: Any) -> None:
    ip.run_cell_magic("chat", "", "earlier turn")
    with capture_output() as captured:
        ip.run_cell_magic("chat", "--dry-run --max-tokens 100", "What now?")
    text = captured.stdout + "".join(str(o.data) for o in captured.outputs)
    assert SENTINEL_KEY not in text
    plain = "".join(o.data.get("text/plain", "") for o in captured.outputs)
    assert "\nAuthorization: Bearer ****\n" in plain
    assert f"POST {server.base_url}/chat/completions" in text
    assert "nothing was sent" in text and '"max_tokens": 100' in text
    assert "user: earlier turn" in text and "user: What now?" in text
    assert len(chat_requests(server)) == 1  # only the earlier turn


def test_dry_run_lists_what_trimming_drops(ip: Any, server: Any) -> None:
    ip.run_line_magic("llm_provider", "model loop set test-model --context 600")
    server.reply = "r" * 1200
    ip.run_cell_magic("chat", "", "old question one")
    ip.run_cell_magic("chat", "", "old question two")
    with capture_output() as captured:
        ip.run_cell_magic("chat", "--dry-run", "newest")
    text = "".join(str(o.data) for o in captured.outputs)
    assert "dropped the 1 oldest turn" in text
    assert "Dropped (2 messages" in text and "old question one" in text.split("Dropped")[1]


def test_failed_call_shows_a_card_and_keeps_the_conversation_clean(
    ip: Any, server: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBLLM_TEST_CHAT_KEY", "wrong-key")
    with pytest.raises(UsageError, match="AuthenticationError"):
        ip.run_cell_magic("chat", "", "hello?")
    out = capsys.readouterr().out
    assert "AuthenticationError" in out and "Hint:" in out and "not added to conversation" in out
    assert "wrong-key" not in out
    monkeypatch.setenv("NBLLM_TEST_CHAT_KEY", SENTINEL_KEY)
    ip.run_cell_magic("chat", "", "hello again")
    assert [m["content"] for m in chat_requests(server)[-1].body["messages"]] == ["hello again"]


def test_incomplete_stream_keeps_partial_text(ip: Any, server: Any, capsys: Any) -> None:
    server.reply = "one two three four five six"
    server.enqueue("no_done; after_chunks=3")
    with pytest.raises(UsageError, match="IncompleteStreamError"):
        ip.run_cell_magic("chat", "", "count")
    out = capsys.readouterr().out
    assert out.startswith("one two three") and "incomplete" in out
    assert nbllm.last().status == "incomplete" and nbllm.last().text.startswith("one two three")


def test_final_mode_displays_once_with_the_text(ip: Any, server: Any) -> None:
    ip.magics_manager.registry["ChatMagics"].display_mode = "final"
    with capture_output() as captured:
        ip.run_cell_magic("chat", "", "hi")
    assert len(captured.outputs) == 1
    output = captured.outputs[0]
    assert output.data["text/plain"].startswith("Paris is the capital.\n[loop/test-model")
    assert output.metadata["nbllm"]["model"] == "loop/test-model"


def test_live_mode_updates_one_display(ip: Any, server: Any) -> None:
    ip.magics_manager.registry["ChatMagics"].display_mode = "live"
    server.tokens_per_s = 100
    with capture_output() as captured:
        ip.run_cell_magic("chat", "", "hi")
    assert len(captured.outputs) >= 2
    assert captured.outputs[0].data["text/markdown"].startswith("*waiting for first token")
    final = [o.data["text/plain"] for o in captured.outputs if o.data.get("text/plain")]
    assert final[-1].startswith("Paris is the capital.")
    # The in-cell Stop was shown while it streamed, and emptied at the end.
    stops = [o for o in captured.outputs if "application/vnd.jupyter.widget-view+json" in o.data]
    assert len(stops) == 1 and captured.outputs[-1].data == {"text/plain": ""}


def test_compare_streams_models_concurrently(ip: Any, server: Any) -> None:
    ip.magics_manager.registry["ChatMagics"].display_mode = "final"
    server.tokens_per_s = 20  # 4 tokens: about 0.2 s per model
    started = time.perf_counter()
    with capture_output() as captured:
        ip.run_cell_magic("chat", "--compare loop/test-model,loop/plain-model -o both", "compare me")
    elapsed = time.perf_counter() - started
    alone = 4 / 20
    assert elapsed < 2 * alone + 0.3  # concurrent: close to one model's time, not the sum
    plain = captured.outputs[-1].data["text/plain"]
    assert "== loop/test-model ==" in plain and "== loop/plain-model ==" in plain
    final = captured.outputs[-1].data["text/markdown"]
    assert "<table>" in final and "answer after" in final
    # Issue 35, item 7: the replies render as Markdown, each between blank lines in its column.
    assert "\n\nParis is the capital.\n\n" in final and "<div style=" in final
    assert set(ip.user_ns["both"]) == {"loop/test-model", "loop/plain-model"}
    assert len(chat_requests(server)) == 2


def test_history_magic_lists_calls(ip: Any, server: Any, capsys: Any) -> None:
    ip.run_cell_magic("chat", "", "one")
    ip.run_cell_magic("chat", "loop/plain-model", "two")
    with capture_output() as captured:
        ip.run_line_magic("llm_history", "-n 1")
    text = captured.outputs[0].data["text/plain"]
    assert "loop/plain-model" in text.splitlines()[2] and "ok" in text
    assert "loop/test-model: 1 call," in text
    with pytest.raises(UsageError):
        ip.run_line_magic("llm_history", "-n 0")


def test_help_and_config(ip: Any) -> None:
    doc = ip.magics_manager.magics["cell"]["chat"].__doc__
    for option in ("--conversation", "--dry-run", "--tools", "--compare", "--no-interp", "{{name}}"):
        assert option in doc
    magics = ip.magics_manager.registry["ChatMagics"]
    ip.run_line_magic("config", "ChatMagics.throttle_ms = 120")
    assert magics.throttle_ms == 120
    ip.run_line_magic("config", "ChatMagics.throttle_ms = 50")
    with pytest.raises(TraitError, match="throttle_ms cannot be negative"):
        magics.throttle_ms = -1
    assert magics.throttle_ms == 50


def test_nbllm_live_env_selects_final_mode(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "auto"
    monkeypatch.setenv("NBLLM_LIVE", "0")
    assert magics._mode() == "final"
    monkeypatch.delenv("NBLLM_LIVE")
    assert magics._mode() == "terminal"  # this test shell is a terminal shell


def test_a_key_gone_missing_is_a_usage_error_not_a_cancellation(
    ip: Any, server: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NBLLM_TEST_CHAT_KEY")
    with pytest.raises(UsageError, match="MissingKeyError"):
        ip.run_cell_magic("chat", "", "hello?")
    out = capsys.readouterr().out
    assert "NBLLM_TEST_CHAT_KEY" in out and "cancelled" not in out
    assert nbllm.last().status == "error" and chat_requests(server) == []


def test_an_interrupt_inside_a_tool_ends_the_reply_as_cancelled(ip: Any, server: Any, capsys: Any) -> None:
    def stop_here() -> str:
        """Simulates Ctrl-C while a tool runs."""
        raise KeyboardInterrupt

    ip.user_ns["stop_here"] = stop_here
    server.tool_calls = [ScriptedToolCall("stop_here", {})]
    with pytest.raises(UsageError, match=r"^interrupted: the reply above is partial"):
        ip.run_cell_magic("chat", "--tools stop_here", "go")
    assert "(cancelled" in capsys.readouterr().out
    assert nbllm.last().status == "cancelled"
