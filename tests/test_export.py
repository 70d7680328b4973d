"""Exporting and importing conversations, the session budget and OpenTelemetry traces (issue
32), against a real loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm._cells.conversation import get_conversations
from nbllm._log.writer import get_log
from nbllm.testing import LoopbackServer, ScriptedToolCall, serve


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve(reply="Pack light.") as running:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="p",
                url=running.base_url,
                auth="none",
                models={"m": {"capabilities": "tools", "price": "1000,2000"}},
            )
        )
        yield running


def last_messages(server: LoopbackServer) -> list[dict[str, Any]]:
    return list([r for r in server.requests if r.method == "POST"][-1].body["messages"])


def test_a_json_export_imported_gives_the_same_next_request(
    server: LoopbackServer, ip: Any, tmp_path: Path
) -> None:
    ip.run_cell_magic("chat", "p/m -c trip --system 'You plan trips.'", "Where should I go in May?")
    ip.run_cell_magic("chat", "p/m -c trip", "And what should I {{pack}}?")  # sent as {pack}
    path = tmp_path / "trip.json"
    ip.run_line_magic("llm_export", f"trip --to json {path}")
    document = json.loads(path.read_text())
    assert document["model"] == "p/m" and document["messages"][0] == {
        "role": "system",
        "content": "You plan trips.",
    }
    ip.run_cell_magic("chat", "p/m -c trip", "Thanks!")
    expected = last_messages(server)
    get_conversations().clear()
    ip.run_line_magic("llm_import", str(path))
    ip.run_cell_magic("chat", "p/m -c trip", "Thanks!")
    assert last_messages(server) == expected
    ip.run_line_magic("llm_import", f"{path} --as copy")
    assert len(get_conversations().get("copy").turns) == 2


def test_markdown_and_notebook_exports(server: LoopbackServer, ip: Any, tmp_path: Path) -> None:
    def get_weather(city: str) -> str:
        """The weather."""
        return "sunny"

    ip.user_ns["get_weather"] = get_weather
    server.tool_calls = [ScriptedToolCall("get_weather", {"city": "Oslo"})]
    ip.run_cell_magic("chat", "p/m -c oslo --tools get_weather", "Weather in {{Oslo}}?")
    server.tool_calls = []
    markdown = nbllm.export("oslo", to="md", path=tmp_path / "oslo.md").read_text()
    assert "## User\n\nWeather in {Oslo}?" in markdown and "`get_weather(" in markdown
    assert "**tool result**" in markdown and "sunny" in markdown
    notebook = nbformat.read(nbllm.export("oslo", to="ipynb", path=tmp_path / "oslo.ipynb"), as_version=4)
    nbformat.validate(notebook)
    sources = [cell.source for cell in notebook.cells]
    assert sources[1] == "%load_ext nbllm"
    assert sources[2] == "%%chat p/m -c oslo --no-interp --new\nWeather in {Oslo}?"
    assert sources[3] == "Done." and notebook.cells[3].cell_type == "markdown"  # the reply after the tool


def test_a_conversation_no_longer_in_the_session_comes_from_the_log(
    server: LoopbackServer, ip: Any, tmp_path: Path
) -> None:
    get_log().turn_on(tmp_path / "log.db")
    try:
        ip.run_cell_magic("chat", "p/m -c kept", "First question")
        ip.run_cell_magic("chat", "p/m -c kept", "Second question")
        session_copy = json.loads(nbllm.export("kept", to="json", path=tmp_path / "a.json").read_text())
        get_conversations().clear()
        from_log = json.loads(nbllm.export("kept", to="json", path=tmp_path / "b.json").read_text())
        assert from_log["messages"] == session_copy["messages"]
        rows = nbllm.logs(conversation="kept")
        text = nbllm.export(to="md", rows=rows, path=tmp_path / "rows.md").read_text()
        assert text.count("## ") == 2 and "Conversation: kept" in text
    finally:
        get_log().turn_off()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("ghost --to md", "no conversation named 'ghost'"),
        ("default --to pdf", "md, json or ipynb"),
        ("default", "say the format"),
    ],
)
def test_export_mistakes_say_what_to_do(ip: Any, line: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        ip.run_line_magic("llm_export", line)
    assert "ghost" not in get_conversations().names()  # looking for it did not make it


def test_import_refuses_what_is_not_an_export(ip: Any, tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"messages": []}')
    with pytest.raises(UsageError, match="not an nbllm conversation export"):
        ip.run_line_magic("llm_import", str(tmp_path / "x.json"))
    (tmp_path / "y.json").write_text('{"nbllm": "conversation", "messages": [{"role": "wizard"}]}')
    with pytest.raises(UsageError, match="chat messages with roles"):
        ip.run_line_magic("llm_import", str(tmp_path / "y.json"))
    (tmp_path / "z.json").write_text(
        '{"nbllm": "conversation", "messages": [{"role": "user", "content": 7}]}'
    )
    with pytest.raises(UsageError, match="chat messages with roles and text"):
        ip.run_line_magic("llm_import", str(tmp_path / "z.json"))
    with pytest.raises(UsageError, match="cannot read"):
        ip.run_line_magic("llm_import", str(tmp_path / "missing.json"))


def test_the_budget_refuses_the_call_that_would_pass_it_before_sending(
    server: LoopbackServer, ip: Any, capsys: Any
) -> None:
    nbllm.chat("Hi", model="p/m")  # about 8 prompt tokens and 2 reply tokens at $1000/$2000 per M
    spent = nbllm.history()[-1].cost
    assert spent is not None and spent > 0
    with pytest.warns(nbllm._calls.budget.BudgetWarning, match="85% spent|of the session's budget"):
        ip.run_line_magic("llm_budget", f"{spent / 0.85}")  # already past 80%: said at once
    assert f"spent {spent:.4g} (p {spent:.4g})" in capsys.readouterr().out
    sent = len(server.requests)
    with pytest.raises(nbllm.BudgetError, match="would cost about"):
        nbllm.chat("Hi again", model="p/m", max_tokens=1000)  # up to $2 of reply
    with pytest.raises(UsageError, match="BudgetError"):  # the card above it says why
        ip.run_cell_magic("chat", "p/m --max-tokens 1000", "And again")
    assert len(server.requests) == sent  # the server saw nothing
    refused = nbllm.history()[-1]
    assert refused.status == "error" and refused.error_class == "BudgetError"
    ip.run_line_magic("llm_budget", "off")
    nbllm.chat("Free again", model="p/m", max_tokens=1000)
    with pytest.raises(UsageError, match="an amount"):
        ip.run_line_magic("llm_budget", "lots")


def test_traces_follow_the_genai_conventions(server: LoopbackServer, ip: Any) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process; this is the only test that sets it
    ip.run_line_magic("llm_trace", "on")
    try:
        server.enqueue("server_error")
        server.tool_calls = [ScriptedToolCall("get_time", {})]
        ip.user_ns["get_time"] = lambda: "noon"
        ip.run_cell_magic("chat", "p/m -c clock --tools get_time", "What time is it?")
    finally:
        ip.run_line_magic("llm_trace", "off")
        server.tool_calls = []
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) >= {"chat m", "execute_tool get_time", "attempt 1", "attempt 2"}
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat m"]
    first = chats[0]
    attributes = dict(first.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "p" and attributes["gen_ai.request.model"] == "m"
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] >= 0
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attributes["gen_ai.conversation.id"] == "clock"
    assert "gen_ai.input.messages" not in attributes  # no text without --content
    attempts = [s for s in exporter.get_finished_spans() if s.name.startswith("attempt")]
    assert all(s.parent is not None and s.parent.span_id == first.context.span_id for s in attempts[:2])
    assert dict(attempts[0].attributes or {})["http.response.status_code"] == 500
    tool = spans["execute_tool get_time"]
    assert tool.parent is not None and tool.parent.span_id == first.context.span_id
    assert first.start_time < first.end_time


def test_the_budget_refuses_embeddings_it_cannot_pay_for_before_sending() -> None:
    with serve() as server:
        models = {"e": {"capabilities": "embeddings", "price": "100000,0"}}
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="q", url=server.base_url, auth="none", models=models)
        )
        nbllm.budget(0.001)
        with pytest.raises(nbllm.BudgetError, match=r"about 60 \(600 prompt tokens\)"):
            nbllm.embed(["a long text " * 50] * 4, model="q/e")
        assert [r for r in server.requests if r.method == "POST"] == []
        assert nbllm.history()[-1].error_class == "BudgetError"
        nbllm.budget(1.0)
        assert nbllm.embed(["short"], model="q/e").shape == (1, 16)  # about 0.1: fits now
