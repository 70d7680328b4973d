"""Live rendering with a recorded display and a fake clock: throttling, final frames, cards."""

from __future__ import annotations

import html
import io
from typing import Any

import pytest

from nbllm._calls.results import ChatResult, StatusEvent, ToolCall, Usage
from nbllm._exceptions import RateLimitError
from nbllm._views.reply import LiveView, TerminalView, Throttle


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, str], dict[str, Any], str]] = []

    def show(self, bundle: dict[str, str], metadata: dict[str, Any], display_id: str) -> None:
        self.frames.append(("show", bundle, metadata, display_id))

    def update(self, bundle: dict[str, str], metadata: dict[str, Any], display_id: str) -> None:
        self.frames.append(("update", bundle, metadata, display_id))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_view(live: bool = True, **throttle: Any) -> tuple[LiveView, Recorder, Clock]:
    recorder, clock = Recorder(), Clock()
    view = LiveView("p/m", live=live, throttle=Throttle(**throttle), display=recorder, clock=clock)
    return view, recorder, clock


def ok_result(text: str, **fields: Any) -> ChatResult:
    return ChatResult(text=text, model="p/m", ttft_s=0.1, latency_s=1.0, usage=Usage(5, 10), **fields)


def test_first_token_shows_at_once_then_updates_are_coalesced() -> None:
    view, recorder, clock = make_view(interval_s=0.05, stretch_chars=0)
    view.start()
    assert (
        recorder.frames[0][0] == "show"
        and "waiting for first token" in recorder.frames[0][1]["text/markdown"]
    )
    view.token("Hel")
    assert recorder.frames[-1][1]["text/markdown"].startswith("Hel")
    for piece in "lo wor":
        clock.now += 0.001
        view.token(piece)
    assert len(recorder.frames) == 2  # all coalesced
    clock.now += 0.06
    view.tick()
    assert len(recorder.frames) == 3 and recorder.frames[-1][1]["text/markdown"].startswith("Hello wor")
    assert {frame[3] for frame in recorder.frames} == {view.handle.display_id}  # one handle
    assert all(frame[0] == "update" for frame in recorder.frames[1:])


def test_final_frame_has_text_footer_and_metadata() -> None:
    view, recorder, _ = make_view()
    view.start()
    view.token("Hi there")
    view.finish(ok_result("Hi there", retries=1))
    _, bundle, metadata, _ = recorder.frames[-1]
    assert bundle["text/plain"].startswith("Hi there\n[p/m · first token 0.10 s · total 1.00 s · 10 tokens")
    assert "1 retry" in bundle["text/markdown"]
    assert metadata["nbllm"]["ttft_s"] == 0.1 and metadata["nbllm"]["completion_tokens"] == 10
    assert metadata["nbllm"]["retries"] == 1 and metadata["nbllm"]["status"] == "ok"


def test_final_only_mode_draws_one_frame() -> None:
    view, recorder, clock = make_view(live=False)
    view.start()
    for piece in ["a", "b", "c"]:
        clock.now += 1
        view.token(piece)
        view.tick()
    view.finish(ok_result("abc"))
    assert [frame[0] for frame in recorder.frames] == ["show"]
    assert recorder.frames[0][1]["text/plain"].startswith("abc\n")


def test_cancelled_and_incomplete_keep_the_text_and_say_so() -> None:
    for status, words in [("cancelled", "cancelled"), ("incomplete", "incomplete")]:
        view, recorder, _ = make_view()
        view.start()
        view.token("partial answ")
        view.finish(ok_result("partial answ", status=status), note="not added to conversation 'default'")
        plain = recorder.frames[-1][1]["text/plain"]
        assert plain.startswith("partial answ")
        assert f"({words}:" in plain and "not added to conversation" in plain
        assert status.upper() in plain


def test_error_card_has_class_upstream_message_and_hint() -> None:
    view, recorder, _ = make_view()
    view.start()
    error = RateLimitError(
        "rate limited by p/m", status=429, upstream_message="slow down please", hint="wait or add --fallback"
    )
    view.finish(ChatResult(model="p/m", status="error"), error)
    markdown = recorder.frames[-1][1]["text/markdown"]
    assert (
        "HTTP 429 from p" in markdown and "RateLimitError" in markdown and 'class="nbllm-error"' in markdown
    )
    assert "slow down please" in markdown and "wait or add <code>--fallback</code>" in markdown


@pytest.mark.parametrize(
    ("hint", "code"),
    [
        (
            "type it with %llm_provider add gw --url https://x/v1 --key-prompt, which",
            "%llm_provider add gw --url https://x/v1 --key-prompt",
        ),
        ("try --fallback PROVIDER/MODEL (in %%chat)", "--fallback PROVIDER/MODEL"),
        ("set OPENAI_API_KEY; the text is in nbllm.last().text", "nbllm.last().text"),
        ("set OPENAI_API_KEY; the text is in nbllm.last().text", "OPENAI_API_KEY"),
        ("credentials: --proxy http://USER:${PW}@HOST:3128, or", "--proxy http://USER:${PW}@HOST:3128"),
    ],
)
def test_commands_in_a_hint_are_in_code_formatting(hint: str, code: str) -> None:
    """Issue 35, item 10: every command in a hint complete and in code formatting."""
    from nbllm._views.reply import hint_html

    assert f"<code>{html.escape(code)}</code>" in hint_html(hint)


def test_retry_countdown_ticks_down() -> None:
    view, recorder, clock = make_view()
    view.start()
    view.status(StatusEvent("rate_limited", "rate limited, retrying in 3.0 s", 3.0, 2, 3))
    assert "retrying in 3.0 s (attempt 2 of 3)" in recorder.frames[-1][1]["text/markdown"]
    clock.now += 1.2
    view.tick()
    assert "retrying in 1.8 s" in recorder.frames[-1][1]["text/markdown"]
    clock.now += 1.6
    view.tick()  # under a second left: tenths, never "retrying in 0 s"
    assert "retrying in 0.2 s" in recorder.frames[-1][1]["text/markdown"]
    assert "waiting \N{MIDDLE DOT} 2.8 s" in recorder.frames[-1][1]["text/markdown"]


def test_tool_calls_and_results_are_shown() -> None:
    view, recorder, _ = make_view()
    call = ToolCall("c1", "get_weather", '{"city": "Oslo"}')
    view.tool_call(call)
    assert "get_weather" in recorder.frames[-1][1]["text/markdown"]
    view.tool_result(call, '{"temp": 21}', True)
    markdown = recorder.frames[-1][1]["text/markdown"]
    assert markdown.count("get_weather") == 1 and "temp" in markdown


@pytest.mark.parametrize("tokens", [1000, 5000])
def test_stretched_interval_keeps_bytes_near_linear(tokens: int) -> None:
    """5,000 tokens of ~8 chars at 500 tok/s: a fixed 50 ms interval would resend the whole
    text ~200 times; stretching keeps the total within 20x the reply's size."""
    view, recorder, clock = make_view()
    view.start()
    for _ in range(tokens):
        clock.now += 1 / 500
        view.token("word123 ")
    view.finish(ok_result("x"))
    sent = sum(len(frame[1].get("text/markdown", "")) for frame in recorder.frames)
    reply = tokens * 8
    assert sent <= 20 * reply
    assert len(recorder.frames) >= 10  # still live, not one frame at the end


def test_terminal_view_writes_tokens_as_they_arrive() -> None:
    out = io.StringIO()
    view = TerminalView("p/m", out=out)
    view.start()
    view.token("Hel")
    assert out.getvalue() == "Hel"
    view.token("lo")
    view.status(StatusEvent("retry", "ServerError, retrying in 1.0 s", 1.0, 2, 3))
    view.finish(ok_result("Hello", status="cancelled"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "Hello"
    assert lines[1] == "[ServerError, retrying in 1.0 s]"
    assert lines[2].startswith("(cancelled") and lines[3].startswith("[p/m")


def test_nothing_overwrites_the_final_frame() -> None:
    view, recorder, clock = make_view()
    view.start()
    view.token("a")
    clock.now += 0.001
    view.token("b")  # coalesced: the view is dirty
    view.finish(ok_result("ab"))
    clock.now += 1
    view.tick()
    view.status(StatusEvent("retry", "late event", 1.0, 2, 3))
    assert "text/plain" in recorder.frames[-1][1]


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_thinking_is_a_collapsed_section_that_updates_in_place_then_the_answer() -> None:
    view, recorder, clock = make_view(interval_s=0.05, stretch_chars=0)
    view.start()
    view.reasoning("Let me <i>see</i>")
    assert view.frame is not None and WIDGET_VIEW in recorder.frames[-1][1]  # the frame replaces the wait
    frame = view.frame
    assert frame.section.selected_index is None and frame.section.titles[0].startswith("Thinking")
    frames_before = len(recorder.frames)
    clock.now += 0.001
    view.reasoning(" more")
    assert frame._thinking.value.count("more") == 0  # coalesced until due
    clock.now += 0.06
    view.tick()
    assert "Let me &lt;i&gt;see&lt;/i&gt; more" in frame._thinking.value
    assert len(recorder.frames) == frames_before  # updated through the widgets, no new output
    frame.section.selected_index = 0  # the user opens it; nothing the view does shuts it
    clock.now += 1.0
    view.tick()  # no new thinking: the clock in the title still moves
    assert frame.section.titles[0].startswith("Thinking\N{HORIZONTAL ELLIPSIS} 1 s")
    view.token("Answer.")
    assert frame.section.titles[0].startswith("Thought for 1.06 s") and frame.section.selected_index == 0
    assert "Answer." in frame.answer.outputs[0]["data"]["text/markdown"]
    result = ok_result("Answer.", reasoning="Let me <i>see</i> more", thinking_s=1.06)
    result.usage.reasoning_tokens = 6
    view.finish(result)
    final = recorder.frames[-1][1]
    # The user opened it while it streamed: the final frame keeps it open (issue 35, item 6).
    assert final["text/markdown"].startswith(
        "<details open><summary><i>Thought for 1.06 s, 6 tokens</i></summary>"
    )
    assert "&lt;i&gt;see&lt;/i&gt;" in final["text/markdown"] and "Answer." in final["text/markdown"]
    assert final["text/plain"].startswith("[Thought for 1.06 s, 6 tokens; the thinking is in nbllm.last()")
    assert view.frame is None and {f[3] for f in recorder.frames} == {view.handle.display_id}


def test_final_only_mode_draws_no_widget_and_shows_thinking_open_when_asked() -> None:
    recorder = Recorder()
    view = LiveView("p/m", live=False, display=recorder, show_thinking=True)
    view.start()
    view.reasoning("hmm")
    view.token("Yes.")
    view.finish(ok_result("Yes.", reasoning="hmm"))
    assert len(recorder.frames) == 1 and view.frame is None
    assert recorder.frames[0][1]["text/markdown"].startswith("<details open>")
    assert recorder.frames[0][1]["text/plain"].startswith("[Thought]\nhmm\n[answer]\nYes.")


def test_a_thinking_budget_error_is_not_called_a_stream_that_ended_early() -> None:
    from nbllm import ThinkingBudgetError

    view, recorder, _ = make_view(live=False)
    view.reasoning("long thoughts")
    result = ok_result("", reasoning="long thoughts", status="incomplete")
    view.finish(result, ThinkingBudgetError("p/m spent all 8 tokens thinking and wrote no answer"))
    plain = recorder.frames[-1][1]["text/plain"]
    assert "spent all 8 tokens thinking" in plain and "ended early" not in plain


@pytest.mark.parametrize(
    ("dollars", "estimated", "shown"),
    [
        (0.00007, True, "<$0.001"),
        (0.000104, False, "<$0.001"),
        (0.00345, True, "~$0.0034"),
        (0.0104, False, "$0.010"),
        (0.123, True, "~$0.12"),
        (1234.5, False, "$1,234.50"),
    ],
)
def test_one_cost_format_everywhere(dollars: float, estimated: bool, shown: str) -> None:
    """Issue 35, item 9: "~$0.00007" beside "~$0.000104"; two significant digits now."""
    from nbllm._calls.results import format_cost

    assert format_cost(dollars, estimated=estimated) == shown


def test_compare_columns_end_as_markdown_that_no_reply_can_break_out_of() -> None:
    """Issue 35, item 7: --compare showed raw Markdown in its final frame, and its table gave a
    reasoning model "first token 0.02 s" and counted thinking as answer tokens."""
    from nbllm._views.compare import CompareView

    recorder = Recorder()
    view = CompareView(["p/a", "p/b"], display=recorder)
    replies = ["**bold**\n\n```python\nprint(1)\n", "</div></div><script>alert(1)</script> after"]
    usage = Usage(3, 50, reasoning_tokens=40)
    for column, text in zip(view.columns, replies, strict=True):
        column.start()
        column.token(text)
        result = ChatResult(
            text=text, model=column.model, usage=usage, ttft_s=0.02, thinking_s=6.8, latency_s=9
        )
        column.finish(result)
    view.finish()
    final = recorder.frames[-1][1]["text/markdown"]
    assert "\n\n**bold**\n\n```python\nprint(1)\n\n```\n" in final  # the open fence is closed
    assert "<script>" not in final and final.count("</div>") == 3  # two columns and the grid
    row = final.split("<tr>")[2]
    assert "6.82 s" in row and ">40<" in row and ">10<" in row  # answer after; thinking apart
