"""Approval before a tool runs (issue 31): a tool that is not declared read-only waits for the
user; a denial goes back to the model as the tool's result; every call is in the history with
its arguments masked; the widget's buttons decide, and its timeout denies."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

import nbllm
from nbllm._calls.results import ToolCall
from nbllm._cells.approval import PromptApprover
from nbllm._cells.cell import CellRun, ChatOptions, prepare_cell
from nbllm._cells.tools import Tool
from nbllm._cells.ui_thread import DirectUi
from nbllm._views.approval_widget import WidgetApprover
from nbllm._views.reply import TerminalView
from nbllm.testing import LoopbackServer, ScriptedToolCall, serve
from tests.helpers import SENTINEL_KEY
from tests.test_render import Recorder

deleted: list[str] = []


def delete_file(path: str) -> str:
    """Delete a file."""
    deleted.append(path)
    return f"deleted {path}"


@nbllm.tool(read_only=True)
def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"


class Scripted:
    """An approver that answers from a list, and remembers what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers, self.asked = list(answers), []

    async def decide(self, call: ToolCall, tool: Tool, timeout_s: float, ui: Any) -> str:
        self.asked.append(tool.name)
        return self.answers.pop(0)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    deleted.clear()
    with serve(reply="Done.", api_key=SENTINEL_KEY) as running:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="p", url=running.base_url, key=SENTINEL_KEY, models={"m": {"capabilities": "tools"}}
            )
        )
        yield running


async def run_cell(calls: list[ScriptedToolCall], server: LoopbackServer, approve: str, approver: Any) -> Any:
    server.tool_calls, server.tool_reply = calls, "All done."
    namespace = {"delete_file": delete_file, "read_file": read_file}
    options = ChatOptions(model="p/m", tools=["delete_file", "read_file"], approve=approve)  # type: ignore[arg-type]
    prepared = prepare_cell(options, "Tidy up.", namespace)
    return await CellRun(prepared, TerminalView("p/m", out=io.StringIO()), approver=approver).run(DirectUi())


def tool_results(server: LoopbackServer) -> list[str]:
    last = [r for r in server.requests if r.method == "POST"][-1].body["messages"]
    return [m["content"] for m in last if m["role"] == "tool"]


async def test_a_denied_call_does_not_run_and_the_model_hears_why(server: LoopbackServer) -> None:
    approver = Scripted("denied")
    secret_path = f"/tmp/{SENTINEL_KEY}"
    outcome = await run_cell(
        [ScriptedToolCall("delete_file", {"path": secret_path})], server, "ask", approver
    )
    assert outcome.error is None and deleted == [] and approver.asked == ["delete_file"]
    assert tool_results(server) == [
        "the user denied this call; do not try it again unless the user asks for it"
    ]
    record = nbllm.history()[-2]  # the tool's record, then the answering round's
    assert record.kind == "tool" and record.model == "tool:delete_file" and record.approval == "denied"
    assert record.status == "cancelled" and SENTINEL_KEY not in (record.tool_arguments or "")
    assert "****" in (record.tool_arguments or "")  # the key, masked by value
    from nbllm._views.tables import HistoryTable

    shown = repr(HistoryTable(nbllm.history()))
    assert "tool:delete_file" in shown and "denied" in shown and SENTINEL_KEY not in shown


async def test_read_only_tools_run_without_asking(server: LoopbackServer) -> None:
    approver = Scripted()
    await run_cell([ScriptedToolCall("read_file", {"path": "a.txt"})], server, "ask", approver)
    assert approver.asked == [] and tool_results(server) == ["contents of a.txt"]
    assert nbllm.history()[-2].approval == "read-only" and nbllm.history()[-2].result_chars == 17


async def test_approve_all_covers_the_rest_of_the_cell(server: LoopbackServer) -> None:
    approver = Scripted("approve-all")
    calls = [ScriptedToolCall("delete_file", {"path": "a"}), ScriptedToolCall("delete_file", {"path": "b"})]
    await run_cell(calls, server, "ask", approver)
    assert deleted == ["a", "b"] and approver.asked == ["delete_file"]


@pytest.mark.parametrize(("mode", "ran"), [("auto", ["x"]), ("never", [])])
async def test_auto_runs_and_never_denies_without_asking(
    server: LoopbackServer, mode: str, ran: list[str]
) -> None:
    approver = Scripted()
    await run_cell([ScriptedToolCall("delete_file", {"path": "x"})], server, mode, approver)
    assert deleted == ran and approver.asked == []


async def test_a_prompt_asks_and_nobody_to_ask_is_a_denial() -> None:
    call, tool = ToolCall("c1", "delete_file", '{"path": "x"}'), Tool.from_callable(delete_file)
    questions: list[str] = []

    def answer(question: str) -> str:
        questions.append(question)
        return "y"

    assert await PromptApprover(answer).decide(call, tool, 1, DirectUi()) == "approved"
    assert "delete_file" in questions[0] and '"path": "x"' in questions[0]

    def no_stdin(question: str) -> str:
        raise EOFError

    assert await PromptApprover(no_stdin).decide(call, tool, 1, DirectUi()) == "nobody"


async def test_the_widget_decides_on_a_click_and_denies_at_the_timeout() -> None:
    call, tool = (
        ToolCall("c1", "delete_file", json.dumps({"path": "<b>x</b>"})),
        Tool.from_callable(delete_file),
    )
    recorder = Recorder()
    approver = WidgetApprover(display=recorder)
    deciding = asyncio.ensure_future(approver.decide(call, tool, 30, DirectUi()))
    await asyncio.sleep(0.05)
    shown = recorder.frames[0][1]
    assert "application/vnd.jupyter.widget-view+json" in shown
    question = approver.last_widget.children[0].value
    assert "&lt;b&gt;x&lt;/b&gt;" in question and "<b>x</b>" not in question  # escaped
    deny = approver.last_widget.children[1].children[1]
    assert deny.description == "Deny"
    deny.click()
    assert await asyncio.wait_for(deciding, 5) == "denied"
    final = recorder.frames[-1][1]
    assert final["text/plain"] == "\N{BALLOT X} denied: delete_file"  # what a saved notebook keeps
    started = asyncio.get_running_loop().time()
    assert await approver.decide(call, tool, 0.3, DirectUi()) == "timeout"
    assert asyncio.get_running_loop().time() - started < 2


# -- --tools notebook ------------------------------------------------------------------------


def test_notebook_tools_read_the_kernel_within_the_context_level(ip: Any, server: LoopbackServer) -> None:
    """Issue 31: read-only tools over the kernel, real values within the privacy level, no code run."""
    import pandas as pd

    ip.user_ns["orders"] = pd.DataFrame({"city": ["Paris", "Lyon"], "amount": [10.5, 20.0]})
    ip.user_ns["secret_note"] = "Zanzibar"
    ip.run_cell("1 / 0")
    calls = [
        ScriptedToolCall("list_variables", {}),
        ScriptedToolCall("describe_variable", {"name": "orders"}),
        ScriptedToolCall("recent_cells", {"count": 1}),
        ScriptedToolCall("last_error", {}),
        ScriptedToolCall("describe_variable", {"name": "nothing_here"}),
    ]
    server.tool_calls, server.tool_reply = calls, "Seen."
    ip.run_cell_magic("chat", "p/m --tools notebook --approve ask", "Look around.")
    listed, described, cells, error, missing = tool_results(server)
    assert "- orders: DataFrame, shape 2 \N{MULTIPLICATION SIGN} 2" in listed
    assert "- secret_note: str, length 8" in listed
    assert "Zanzibar" not in listed  # names, types and sizes: never values
    assert "| city | str | 0 |" in described and "Paris" in described
    assert "1 / 0" in cells and "ZeroDivisionError" in error
    assert missing.startswith("error: the notebook has no variable 'nothing_here'")
    assert [r.approval for r in nbllm.history() if r.kind == "tool"] == ["read-only"] * 5  # none asked
    server.tool_calls = [ScriptedToolCall("describe_variable", {"name": "orders"})]
    ip.run_cell_magic("chat", "p/m --tools notebook --context schema -c other", "Look again.")
    (schema_only,) = tool_results(server)
    assert "| city | str |" in schema_only and "Paris" not in schema_only


# -- --tools run_python ----------------------------------------------------------------------


async def test_run_python_exists_only_when_named_and_asks_even_under_auto(server: LoopbackServer) -> None:
    namespace: dict[str, Any] = {"prices": [3, 4, 5]}
    code = "print('summing')\ntotal = sum(prices)\ntotal * 2"
    server.tool_calls, server.tool_reply = [ScriptedToolCall("run_python", {"code": code})], "24."

    async def run(tools: list[str], approve: str, approver: Any) -> None:
        options = ChatOptions(model="p/m", tools=tools, approve=approve)  # type: ignore[arg-type]
        prepared = prepare_cell(options, "Double the total.", namespace)
        await CellRun(prepared, TerminalView("p/m", out=io.StringIO()), approver=approver).run(DirectUi())

    with pytest.raises(nbllm.ToolError, match="no such function"):
        prepare_cell(ChatOptions(model="p/m", tools=["run_pyth"]), "x", namespace)
    approver = Scripted("denied")
    await run(["run_python"], "auto", approver)
    assert approver.asked == ["run_python"]  # auto does not cover code the model wrote
    assert "total" not in namespace and tool_results(server)[0].startswith("the user denied")
    await run(["run_python"], "never", Scripted())
    assert "total" not in namespace
    await run(["run_python"], "ask", Scripted("approved"))
    assert tool_results(server)[-1] == "summing\n24" and namespace["total"] == 12
    runs = [r.approval for r in nbllm.history() if r.kind == "tool"]
    assert runs == ["denied", "never", "approved"]
