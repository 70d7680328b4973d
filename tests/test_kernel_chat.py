"""`%%chat` in a real kernel (ipykernel over ZMQ) against the loopback server: one display
handle per reply, the throttle, interrupts, and cells queued behind a stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from nbllm.testing import LoopbackServer, serve
from tests.kernel_session import Execution, KernelSession

WORDS = {"short": 200, "long": 2000, "endless": 5000}


def reply_for(body: dict[str, Any]) -> str:
    prompt = str(body["messages"][-1]["content"])
    count = next((n for key, n in WORDS.items() if key in prompt), 5)
    return " ".join(f"w{i:04d}" for i in range(count))


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with serve(reply_for) as running:
        yield running


@pytest.fixture(scope="module")
def kernel(server: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    env = {"NBLLM_CONFIG_DIR": str(tmp_path_factory.mktemp("kernel-config")), "NBLLM_LIVE": "1"}
    with KernelSession(env) as session:
        session.check("%load_ext nbllm")
        session.check(f"%llm_provider add loop --url {server.base_url} --model test-model=100000")
        yield session


def texts(execution: Execution) -> list[str]:
    return [m["content"]["data"]["text/markdown"] for m in execution.displays()]


def test_tokens_stream_into_one_display_handle(kernel: KernelSession, server: LoopbackServer) -> None:
    server.tokens_per_s = 100
    execution = kernel.execute("%%chat\nshort please", timeout=30)
    assert execution.status == "ok"
    kinds = [m["msg_type"] for m in execution.displays()]
    assert kinds[0] == "display_data" and set(kinds[1:]) == {"update_display_data"} and len(kinds) >= 5
    assert len({m["content"]["transient"]["display_id"] for m in execution.displays()}) == 1
    assert texts(execution)[0].startswith("*waiting for first token")
    streamed = [t.split("\n\n<sub>")[0] for t in texts(execution)[1:-1] if "waiting for first" not in t]
    lengths = [len(t) for t in streamed]
    assert lengths == sorted(lengths) and 0 < lengths[0] < lengths[-1]  # it grew, in place
    final = execution.displays()[-1]["content"]
    assert final["data"]["text/plain"].startswith("w0000 w0001") and "w0199" in final["data"]["text/plain"]
    assert final["metadata"]["nbllm"]["completion_tokens"] == 200
    stop = [m for m in execution.all_displays() if m not in execution.displays()]
    assert "application/vnd.jupyter.widget-view+json" in stop[0]["content"]["data"]  # Stop, while it ran
    assert stop[-1]["content"]["data"] == {"text/plain": ""}  # and gone with the final frame
    assert final["metadata"]["nbllm"]["ttft_s"] > 0


def test_updates_are_bounded_by_the_throttle(kernel: KernelSession, server: LoopbackServer) -> None:
    server.tokens_per_s = 500
    started = time.monotonic()
    execution = kernel.execute("%%chat -c throttle\nlong please", timeout=60)
    elapsed = time.monotonic() - started
    assert execution.status == "ok"
    updates = len(execution.displays())
    assert 5 <= updates <= elapsed / 0.05 + 5, updates  # at most one per 50 ms, not one per token
    assert updates < 2000 / 10


def test_interrupt_cancels_keeps_partial_text_and_the_kernel_goes_on(
    kernel: KernelSession, server: LoopbackServer
) -> None:
    server.tokens_per_s = 50
    disconnects_before = len(server.disconnects)
    interrupted_at: list[float] = []

    def interrupt_once_text_shows(message: dict[str, Any]) -> None:
        data = message["content"].get("data", {})
        if not interrupted_at and "w0003" in data.get("text/markdown", ""):
            interrupted_at.append(time.monotonic())
            kernel.manager.interrupt_kernel()

    msg_id = kernel.submit("%%chat -c interrupt\nendless please")
    execution = kernel.collect(msg_id, timeout=30, on_message=interrupt_once_text_shows)
    assert interrupted_at, "the stream never showed text"
    assert execution.status == "error"  # Run All stops here
    error = execution.reply["content"] if execution.reply else {}
    assert error["ename"] == "UsageError" and error["evalue"].startswith("interrupted:")
    shown = "\n".join(error["traceback"]) + "".join(str(m["content"]) for m in execution.of_type("error"))
    assert "Traceback" not in shown and "CancelledError" not in shown  # one line, as after Stop
    final = execution.displays()[-1]["content"]["data"]["text/plain"]
    assert final.startswith("w0000 w0001 w0002 w0003") and "w4999" not in final
    assert "cancelled" in final and "not added to conversation 'interrupt'" in final
    deadline = time.monotonic() + 2
    while len(server.disconnects) == disconnects_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.disconnects) > disconnects_before
    assert server.disconnects[-1] - interrupted_at[0] < 1.0
    after = kernel.check("import nbllm\nprint(nbllm.last().status, nbllm.history()[-1].status)")
    assert after.stdout().split() == ["cancelled", "cancelled"]
    assert kernel.check("%%chat -c interrupt\nhi").status == "ok"


def test_a_cell_queued_behind_a_stream_runs(kernel: KernelSession, server: LoopbackServer) -> None:
    server.tokens_per_s = 200
    streaming = kernel.submit("%%chat -c queued\nshort please")
    queued = kernel.submit("print('queued cell ran')")
    first = kernel.collect(streaming, timeout=30)
    second = kernel.collect(queued, timeout=30)
    assert first.status == "ok" and second.status == "ok"
    assert second.stdout() == "queued cell ran\n"


def test_without_autoawait_the_background_loop_renders(kernel: KernelSession, server: LoopbackServer) -> None:
    server.tokens_per_s = 200
    kernel.check("%autoawait off")
    try:
        execution = kernel.check("%%chat -c thread\nshort please")
    finally:
        kernel.check("%autoawait on")
    assert len({m["content"]["transient"]["display_id"] for m in execution.displays()}) == 1
    assert execution.displays()[-1]["content"]["data"]["text/plain"].startswith("w0000")


def test_errors_are_one_line_usage_errors(kernel: KernelSession) -> None:
    execution = kernel.execute("%%chat nowhere/none\nhi")
    assert execution.status == "error"
    error = execution.reply["content"] if execution.reply else {}
    assert error["ename"] == "UsageError" and error["evalue"].startswith(
        "UnknownModelError: nothing was sent"
    )
    cards = [m["content"]["data"] for m in execution.displays()]
    assert len(cards) == 1 and "nowhere" in cards[0]["text/plain"]  # the card says what and why, once
    assert 'class="nbllm-error"' in cards[0]["text/markdown"]


def test_panel_discover_runs_on_the_kernel_loop_without_blocking(kernel: KernelSession) -> None:
    """In a kernel the click returns at once; the listing arrives while the kernel is free."""
    first = kernel.check(
        "import nbllm\n"
        "panel = nbllm.panel()\n"
        "panel.providers.provider_list.value = 'loop'\n"
        "panel.providers.discover_button.click()\n"
        "print('waiting:', panel.providers.discovered)"
    )
    assert "waiting: []" in first.stdout()
    kernel.check("import asyncio\nawait asyncio.sleep(0.5)")
    second = kernel.check("print(panel.providers.discovered, panel.messages[-1])\npanel.close()")
    assert "['test-model']" in second.stdout() and "serves 1 model(s)" in second.stdout()


def widget_states(execution: Execution) -> list[dict[str, Any]]:
    """The widget state updates the kernel sent (``comm_msg`` with method update)."""
    return [
        m["content"]["data"]["state"]
        for m in execution.of_type("comm_msg")
        if m["content"]["data"].get("method") == "update"
    ]


def test_thinking_streams_into_a_collapsed_section_then_the_answer_below(kernel: KernelSession) -> None:
    thinking = " ".join(f"t{i:03d}" for i in range(80))
    answer = "The answer is " + " ".join(f"a{i:02d}" for i in range(20))
    with serve(reply=answer, reasoning=thinking, tokens_per_s=100) as thinker:
        kernel.check(f"%llm_provider add thinker --url {thinker.base_url} --model m=100000 --caps reasoning")
        started = time.monotonic()
        execution = kernel.execute("%%chat thinker/m\nwhy?", timeout=30)
        elapsed = time.monotonic() - started
    assert execution.status == "ok"
    displays = execution.displays()
    assert len({m["content"]["transient"]["display_id"] for m in displays}) == 1  # one handle
    assert displays[0]["content"]["data"]["text/markdown"].startswith("*waiting for first token")
    widget_view = "application/vnd.jupyter.widget-view+json"
    widget_frames = [d for d in displays if widget_view in d["content"]["data"]]
    assert len(widget_frames) == 1  # shown once; then only its widgets' values change
    states = widget_states(execution)
    titles = [s["titles"][0] for s in states if "titles" in s]
    assert titles[0].startswith("Thinking") and titles[-1].startswith("Thought for")
    values = [s["value"] for s in states if "value" in s and "t000" in s["value"]]
    assert len(values) >= 3 and "t079" in values[-1] and len(values[0]) < len(values[-1])  # it grew live
    assert len(values) <= elapsed / 0.05 + 5  # throttled, not one update per token
    assert all(s.get("selected_index") is None for s in states)  # the kernel never opens or shuts it
    answers = [s["outputs"] for s in states if s.get("outputs")]
    assert "The answer is a00" in answers[-1][0]["data"]["text/markdown"]  # the answer streamed below
    final = displays[-1]["content"]
    markdown = final["data"]["text/markdown"]
    assert markdown.startswith("<details><summary><i>Thought for ")
    assert "t079" in markdown and markdown.index("</details>") < markdown.index(answer)
    assert final["metadata"]["nbllm"]["reasoning_tokens"] == 80
