"""Long replies stay live (issue 33): finished Markdown blocks are frozen into outputs of their
own and only the open tail is redrawn, at a fixed cadence, with bytes linear in the reply; the
final frame is still the whole reply in one output. With a recorded display and a fake clock."""

from __future__ import annotations

import itertools
import re

import pytest

from nbllm._calls.results import ChatResult, Usage
from nbllm._views.blocks import find_cut
from nbllm._views.reply import CURSOR, MAX_LIVE_OUTPUTS, LiveView, Throttle
from nbllm._views.thinking import THINKING_FREEZE_CHARS, LiveThinkingFrame, Thinking
from nbllm.testing.long_reply import markdown_reply
from tests.test_render import Clock, Recorder

# -- where a reply may be cut -----------------------------------------------------------------


def test_a_clean_cut_is_after_a_blank_line_outside_code() -> None:
    text = "First paragraph.\n\n```\ncode\n\nmore code\n```\n\nLast paragraph, still open"
    cut = find_cut(text, 10)
    assert cut is not None and cut.tail(text) == "Last paragraph, still open"
    assert cut.frozen(text).endswith("```")


def test_an_indented_line_after_a_blank_one_is_no_clean_cut() -> None:
    text = "- item one\n\n    still item one, or code\n" + "x" * 5
    assert find_cut(text, 30) is None  # and not long enough to force a cut


def test_an_open_fence_is_cut_at_a_line_and_reopened() -> None:
    text = "```python\n" + "".join(f"x_{i} = {i}\n" for i in range(400))
    cut = find_cut(text, 1000)
    assert cut is not None
    frozen, tail = cut.frozen(text), cut.tail(text)
    assert frozen.startswith("```python\n") and frozen.endswith("\n```")
    assert tail.startswith("```python\n") and tail.count("```") == 1


def test_an_open_table_is_cut_at_a_row_and_the_tail_repeats_its_header() -> None:
    header = "| a | b |\n| --- | --- |\n"
    text = header + "".join(f"| {i} | {i * i} |\n" for i in range(400))
    cut = find_cut(text, 1000)
    assert cut is not None and cut.tail(text).startswith(header)
    assert cut.tail(text)[len(header) :].startswith("| ")


def test_a_paragraph_without_breaks_is_cut_at_a_space_only_when_forced() -> None:
    text = "word " * 300  # 1,500 characters
    assert find_cut(text, 1000) is None
    cut = find_cut(text * 2, 1000)
    assert cut is not None and (text * 2)[cut.at - 1] == " "


# -- a long reply streaming into the view -----------------------------------------------------


def stream(reply: str, tokens_per_s: float) -> tuple[LiveView, Recorder, list[float]]:
    """Send `reply` a word per token; return the view, what it drew, and when (view clock)."""
    recorder, clock = Recorder(), Clock()
    view = LiveView("p/m", throttle=Throttle(0.05, stretch_chars=0), display=recorder, clock=clock)
    view.start()
    times: list[float] = []
    for word in re.findall(r"\S+\s*", reply):
        clock.now += 1 / tokens_per_s
        before = len(recorder.frames)
        view.token(word)
        times += [clock.now] * (len(recorder.frames) - before)
    return view, recorder, times


def visible(recorder: Recorder) -> list[str]:
    """What the cell shows now: the latest frame of each output, in the order they appeared."""
    latest: dict[str, str] = {}
    for _, bundle, _, display_id in recorder.frames:
        latest[display_id] = bundle.get("text/markdown", bundle.get("text/plain", ""))
    return list(latest.values())


@pytest.mark.parametrize("tokens", [5_000, 40_000])
def test_a_long_reply_updates_at_a_steady_cadence_with_linear_bytes(tokens: int) -> None:
    reply = markdown_reply(tokens)
    _view, recorder, times = stream(reply, 2_000)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 0.1  # never a frozen screen, however long the reply
    sent = sum(len(frame[1].get("text/markdown", "")) for frame in recorder.frames)
    assert sent <= 10 * len(reply)
    shown = visible(recorder)
    assert 2 <= len(shown) <= MAX_LIVE_OUTPUTS + 2  # finished blocks apart; few outputs all the same
    tail = shown[-1].rsplit("\n\n<sub>", 1)[0].removesuffix(CURSOR)
    words, sent_words = re.findall(r"\S+", "\n".join([*shown[:-1], tail])), re.findall(r"\S+", reply)
    assert words == sent_words[: len(words)] and len(words) > len(sent_words) - 100  # the last 50 ms


def test_only_the_tail_and_the_output_before_it_are_redrawn() -> None:
    """The tail's output and the warm one before it change while the reply streams; an output
    before those is not touched again until the final frame, which empties all but the first."""
    view, recorder, _ = stream(markdown_reply(40_000), 2_000)
    order = list(dict.fromkeys(frame[3] for frame in recorder.frames))
    assert len(order) >= 3
    last_touch = {display_id: index for index, (*_, display_id) in enumerate(recorder.frames)}
    first_show = {display_id: index for index, (*_, display_id) in reversed(list(enumerate(recorder.frames)))}
    for earlier, later in zip(order, order[2:], strict=False):
        assert last_touch[earlier] < first_show[later]  # left alone once two outputs follow it
    frames_before_final = len(recorder.frames)
    view.finish(ChatResult(text="whole", model="p/m", usage=Usage(5, 10)))
    final = recorder.frames[frames_before_final:]
    assert final[0][3] == order[0] and "text/plain" in final[0][1]  # the first output: the reply
    assert [frame[3] for frame in final[1:]] == order[1:]
    assert all(frame[1] == {"text/plain": ""} for frame in final[1:])  # nothing left behind


def test_a_short_reply_stays_one_output() -> None:
    _, recorder, _ = stream("A short answer.\n\nIn two paragraphs.", 50)
    assert len({frame[3] for frame in recorder.frames}) == 1


def test_long_thinking_is_sent_in_children_that_are_left_alone() -> None:
    frame = LiveThinkingFrame()
    thinking = Thinking()
    sent: list[int] = []
    for i in range(3_000):
        thinking.add(f"step {i} of the plan. ", float(i))
        if i % 20 == 0:
            frame.update("Thinking", thinking, "")
            sent.append(len(frame._thinking.value))
    frame.update("Thinking", thinking, "")
    children = frame._column.children
    assert len(children) > 5
    assert max(sent) < THINKING_FREEZE_CHARS * 1.5  # only the open child is resent
    shown = " ".join(re.sub(r"<[^>]+>", "", child.value) for child in children)
    assert re.findall(r"\S+", shown) == re.findall(r"\S+", thinking.text)
    frame.close()


# -- front ends without widgets ---------------------------------------------------------------


def test_without_widgets_thinking_streams_as_dimmed_markdown_above_the_answer() -> None:
    recorder, clock = Recorder(), Clock()
    view = LiveView(
        "p/m", throttle=Throttle(0.05, stretch_chars=0), display=recorder, clock=clock, widgets=False
    )
    view.start()
    for i in range(2_000):
        clock.now += 0.001
        view.reasoning(f"thought {i} ")
    thinking_frame = recorder.frames[-1][1]
    assert set(thinking_frame) == {"text/markdown"}  # no widget, in any frame
    assert thinking_frame["text/markdown"].startswith("> *Thinking")
    assert "thought 1951" in thinking_frame["text/markdown"]  # the latest, as of the last update
    assert max(len(frame[1]["text/markdown"]) for frame in recorder.frames) < 3_000  # a window, not all
    for word in ("The ", "answer."):
        clock.now += 0.06
        view.token(word)
    answer = recorder.frames[-1][1]["text/markdown"]
    assert answer.startswith("> *Thought for") and "The answer." in answer
    assert answer.index("Thought for") < answer.index("The answer.")
    assert all("application/vnd.jupyter.widget-view+json" not in frame[1] for frame in recorder.frames)
    assert view.frame is None


def test_a_streaming_reply_shows_a_ticking_status_line_and_a_cursor() -> None:
    """Issue 35, item 4: the model alone under the text said nothing of time or progress."""
    recorder, clock = Recorder(), Clock()
    view = LiveView("p/m", throttle=Throttle(0.05, stretch_chars=0), display=recorder, clock=clock)
    view.start()
    for _ in range(3):
        clock.now += 0.1
        view.tick()  # nothing has come: the clock still moves
    assert recorder.frames[-1][1]["text/markdown"].endswith(
        "<sub>p/m \N{MIDDLE DOT} waiting \N{MIDDLE DOT} 0.3 s</sub>"
    )
    for word in ["Hello ", "there, ", "reader."]:
        clock.now += 0.06
        view.token(word)
    live = recorder.frames[-1][1]["text/markdown"]
    assert live.startswith("Hello there, reader." + CURSOR)
    assert "streaming \N{MIDDLE DOT} 0.5 s \N{MIDDLE DOT} ~5 tokens" in live
    view.finish(ChatResult(text="Hello there, reader.", model="p/m", usage=Usage(3, 5)))
    assert CURSOR not in recorder.frames[-1][1]["text/markdown"]


# -- the Stop button in the cell (issue 35, item 4) -------------------------------------------

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_the_stop_button_stays_the_last_output_and_leaves_nothing_behind() -> None:
    recorder, clock = Recorder(), Clock()
    view = LiveView("p/m", throttle=Throttle(0.05, stretch_chars=0), display=recorder, clock=clock)
    view.start()
    stops: list[str] = []
    view.offer_stop(lambda: stops.append("stop"))
    assert WIDGET_MIME in visible_bundles(recorder)[-1]
    for word in re.findall(r"\S+\s*", markdown_reply(20_000)):
        clock.now += 0.0005
        view.token(word)
    shown = visible_bundles(recorder)
    assert len(shown) > 3  # the reply went on into outputs below the first
    assert WIDGET_MIME in shown[-1] and all(WIDGET_MIME not in b for b in shown[:-1])
    view.stop_button.click()
    assert stops == ["stop"]
    view.finish(ChatResult(text="whole", model="p/m", usage=Usage(5, 10)))
    assert all(WIDGET_MIME not in b for b in visible_bundles(recorder))  # a saved notebook holds no button
    assert view.stop_button is None


def test_without_widgets_the_status_line_says_how_to_stop() -> None:
    recorder, clock = Recorder(), Clock()
    view = LiveView("p/m", display=recorder, clock=clock, widgets=False)
    view.start()
    view.offer_stop(lambda: None)
    assert all(WIDGET_MIME not in frame[1] for frame in recorder.frames)
    assert "interrupt the kernel" in recorder.frames[-1][1]["text/markdown"]


def visible_bundles(recorder: Recorder) -> list[dict[str, str]]:
    latest: dict[str, dict[str, str]] = {}
    for _, bundle, _, display_id in recorder.frames:
        latest[display_id] = bundle
    return [bundle for bundle in latest.values() if bundle != {"text/plain": ""}]


def test_compare_columns_keep_a_steady_cadence_and_linear_bytes() -> None:
    """Issue 33: --compare columns follow the same rule as a single reply."""
    from nbllm._views.compare import LIVE_COLUMN_CHARS, CompareView

    recorder, clock = Recorder(), Clock()
    view = CompareView(["p/a", "p/b"], throttle=Throttle(0.05), display=recorder, clock=clock)
    reply = markdown_reply(20_000)
    words = re.findall(r"\S+\s*", reply)
    for column in view.columns:
        column.start()
    times: list[float] = []
    for word in words:
        clock.now += 1 / 2_000
        for column in view.columns:
            before = len(recorder.frames)
            column.token(word)
            times += [clock.now] * (len(recorder.frames) - before)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 0.1
    sent = sum(len(frame[1].get("text/html", "")) for frame in recorder.frames)
    assert sent <= 10 * 2 * len(reply)
    assert max(len(frame[1]["text/html"]) for frame in recorder.frames) < 3 * LIVE_COLUMN_CHARS
    for column in view.columns:
        column.finish(ChatResult(text=reply, model=column.model, usage=Usage(5, 10)))
    view.finish()
    final = recorder.frames[-1][1]
    assert (
        final["text/plain"].count(words[-1].strip()) >= 2 and "characters above" not in final["text/markdown"]
    )
