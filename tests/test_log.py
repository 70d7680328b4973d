"""The opt-in conversation log (issue 32) against a real loopback server: every kind of call is
in the database with its fields and no secret, messages are stored once, search, stats and
prune work, a write failure loses the row but never the call, and two processes writing at
once lose nothing."""

from __future__ import annotations

import http.server
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm._log import database
from nbllm._log.writer import ConversationLog, get_log
from nbllm.testing import LoopbackServer, ScriptedToolCall, serve
from tests.helpers import SENTINEL_KEY

HEADER_SECRET = "hdr-secret-5be1c0ffee"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve(reply="Zebras have stripes.", api_key=SENTINEL_KEY, usage_cost=0.002) as running:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="p",
                url=running.base_url,
                key=SENTINEL_KEY,
                headers={"X-Api-Token": HEADER_SECRET},
                models={"m": {"capabilities": "tools,embeddings"}},
            )
        )
        yield running


@pytest.fixture
def log(tmp_path: Path) -> Iterator[ConversationLog]:
    conversation_log = get_log()
    conversation_log.turn_on(tmp_path / "log.db")
    yield conversation_log
    conversation_log.turn_off()


def rows(log: ConversationLog, **filters: Any) -> list[dict[str, Any]]:
    log.flush()
    assert log.path is not None
    connection = database.connect(log.path)
    try:
        return database.query(connection, limit=None, **filters)
    finally:
        connection.close()


def get_tool_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}, and the key is {SENTINEL_KEY}"


TIMES = 10


def test_every_kind_of_call_is_logged_with_its_fields_and_no_secret(
    log: ConversationLog, server: LoopbackServer, ip: Any
) -> None:
    ip.user_ns["get_tool_weather"] = get_tool_weather
    with serve(reply="Forty-two.", reasoning="Let me think about zebras first.") as thinker:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="r", url=thinker.base_url, auth="none", models={"t": {}})
        )
        for n in range(TIMES):
            nbllm.chat(f"Tell me about zebras {n}. My key is {SENTINEL_KEY}", model="p/m")  # a user's slip
            assert (
                nbllm.chat(f"Stream about lions {n}", model="p/m", stream=True).text == "Zebras have stripes."
            )
            server.tool_calls = [ScriptedToolCall("get_tool_weather", {"city": f"Oslo {n}"})]
            ip.run_cell_magic("chat", "p/m -c weather --tools get_tool_weather", "Weather in Oslo?")
            server.tool_calls = []
            nbllm.chat(f"Think about it {n}", model="r/t")
            nbllm.embed([f"one {n}", "two"], model="p/m")
            server.enqueue("unknown_model")
            with pytest.raises(nbllm.ModelNotFoundError):
                nbllm.chat("This one fails", model="p/m")
        nbllm.map("Summarise {text}", [{"text": str(n)} for n in range(TIMES)], model="p/m", progress=False)
    logged = rows(log)
    by_kind: dict[tuple[str, str], int] = {}
    for row in logged:
        by_kind[(row["kind"], row["status"])] = by_kind.get((row["kind"], row["status"]), 0) + 1
    # per loop: chat, stream, two tool-loop rounds, the thinking call; then the map's rows
    assert by_kind == {
        ("chat", "ok"): 5 * TIMES + TIMES,
        ("tool", "ok"): TIMES,
        ("embed", "ok"): TIMES,
        ("chat", "error"): TIMES,
    }
    first = logged[-1]
    assert first["model"] == "p/m" and first["provider"] == "p" and first["reply"] == "Zebras have stripes."
    assert first["cost"] == pytest.approx(0.002) and first["prompt_tokens"] > 0 and first["latency_s"] > 0
    assert first["protocol"] == "chat" and first["kernel"] and first["status"] == "ok"
    tools = [r for r in logged if r["kind"] == "tool"]
    assert all(r["model"] == "tool:get_tool_weather" and '"Oslo' in r["tool_arguments"] for r in tools)
    assert all(r["conversation"] == "weather" for r in tools)  # labelled with the cell's conversation
    asked = [r for r in logged if r["conversation"] == "weather" and r["tool_calls"]]
    assert len(asked) == TIMES and all("get_tool_weather" in r["tool_calls"] for r in asked)
    thinking = [r for r in logged if r["model"] == "r/t"]
    assert len(thinking) == TIMES
    assert all(
        r["reasoning"] == "Let me think about zebras first." and r["reasoning_tokens"] > 0 for r in thinking
    )
    failed = [r for r in logged if r["status"] == "error"]
    assert {r["error_class"] for r in failed} == {"ModelNotFoundError"}
    assert all(r["texts"] == 2 for r in logged if r["kind"] == "embed")
    assert len(nbllm.logs(search="lions", limit=None)) == TIMES  # the streamed calls' prompts
    log.flush()
    assert log.path is not None
    data = b"".join(p.read_bytes() for p in log.path.parent.glob("log.db*"))
    assert SENTINEL_KEY.encode() not in data and HEADER_SECRET.encode() not in data
    assert b"Tell me about zebras 0. My key is " in data  # the prompt is kept, the key masked


def test_messages_are_stored_once_however_long_the_conversation(
    log: ConversationLog, server: LoopbackServer, ip: Any
) -> None:
    for turn in range(6):
        ip.run_cell_magic("chat", "p/m -c long", f"Question {turn}")
    log.flush()
    assert log.path is not None
    connection = sqlite3.connect(log.path)
    stored = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    referenced = connection.execute("SELECT count(*) FROM call_messages").fetchone()[0]
    connection.close()
    assert referenced == sum(2 * t + 1 for t in range(6))  # each call sends its whole history
    assert stored == 6 + 1  # but each question once, and the reply they all got once


def test_search_filters_stats_and_prune(
    log: ConversationLog, server: LoopbackServer, ip: Any, capsys: Any
) -> None:
    nbllm.chat("What do aardvarks eat?", model="p/m")
    nbllm.chat("Tell me about pangolins", model="p/m")
    found = nbllm.logs(search="pangolins")
    assert list(found["model"]) == ["p/m"] and len(found) == 1
    assert len(nbllm.logs(model="p")) == 2 and len(nbllm.logs(status="error")) == 0
    assert len(nbllm.logs(since="1h")) == 2 and len(nbllm.logs(since=timedelta(seconds=0))) == 0
    ip.run_line_magic("llm_log", "search aardvarks")
    assert "1 call(s) match 'aardvarks'" in capsys.readouterr().out
    ip.run_line_magic("llm_log", "stats")
    ip.run_line_magic("llm_log", "")
    assert "2 calls written this session" in capsys.readouterr().out
    assert log.path is not None
    connection = database.connect(log.path)
    per_day = database.stats(connection)
    assert per_day[0]["calls"] == 2 and per_day[0]["cost"] == pytest.approx(0.004)
    assert database.prune(connection, datetime.now(timezone.utc) - timedelta(days=1)) == 0
    assert database.prune(connection, datetime.now(timezone.utc) + timedelta(seconds=1)) == 2
    left = [
        connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("calls", "messages", "calls_text")
    ]
    connection.close()
    assert left == [0, 0, 0]
    with pytest.raises(UsageError, match="give an age"):
        ip.run_line_magic("llm_log", "prune --older-than soon")


def test_a_failed_write_loses_the_row_never_the_call(
    log: ConversationLog, server: LoopbackServer, capsys: Any
) -> None:
    assert log.path is not None
    blocker = sqlite3.connect(log.path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the file
    log._connection.execute("PRAGMA busy_timeout = 50")  # type: ignore[union-attr]
    result = nbllm.chat("Still answered?", model="p/m")
    assert result.text == "Zebras have stripes."  # the call never waits for its log
    log.flush()
    blocker.rollback()
    blocker.close()
    assert log.lost == 1 and "locked" in (log.last_error or "")
    assert "could not be logged" in capsys.readouterr().err
    nbllm.chat("And now?", model="p/m")
    assert len(rows(log)) == 1


def test_a_bad_path_or_a_newer_log_is_refused_when_turned_on(
    tmp_path: Path, ip: Any, monkeypatch: Any
) -> None:
    newer = tmp_path / "newer.db"
    connection = sqlite3.connect(newer)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(UsageError, match="written by a newer nbllm"):
        ip.run_line_magic("llm_log", f"on {newer}")
    (tmp_path / "not-a-db.db").write_text("hello, this is text")
    with pytest.raises(UsageError, match="cannot be used"):
        ip.run_line_magic("llm_log", f"on {tmp_path / 'not-a-db.db'}")
    with pytest.raises(UsageError, match="unknown %llm_log command"):
        ip.run_line_magic("llm_log", "frobnicate")
    assert not get_log().on
    monkeypatch.setenv("NBLLM_LOG", str(tmp_path / "never-made.db"))
    with pytest.raises(nbllm.LogError, match=r"there is no log at .*never-made\.db yet"):
        nbllm.logs()  # reading never creates a log
    assert not (tmp_path / "never-made.db").exists()


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from nbllm._calls.history import CallRecord, get_history
    from nbllm._log.writer import get_log

    log = get_log()
    log.turn_on(sys.argv[1])
    for n in range(int(sys.argv[2])):
        get_history().add(CallRecord("p/m", "p/m", "h", datetime.now(timezone.utc), latency_s=0.1))
    log.flush(60)
    print(log.written, log.lost)
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "300"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120)[0].split() for w in writers]
    assert outputs == [["300", "0"], ["300", "0"]]
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM calls").fetchone()[0] == 600
    assert connection.execute("SELECT count(DISTINCT kernel) FROM calls").fetchone()[0] == 2
    connection.close()


def test_the_trait_and_the_footer_say_the_log_is_on(
    tmp_path: Path, server: LoopbackServer, ip: Any, capsys: Any
) -> None:
    path = tmp_path / "trait.db"
    ip.run_line_magic("config", f"ChatMagics.log = '{path}'")
    try:
        ip.run_cell_magic("chat", "p/m --no-stream", "First")
        ip.run_cell_magic("chat", "p/m --no-stream", "Second")
        shown = capsys.readouterr().out
        assert shown.count(f"calls are logged to {path}") == 1  # once per session
    finally:
        ip.run_line_magic("config", "ChatMagics.log = ''")
    assert not get_log().on
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT count(*) FROM calls").fetchone()[0] == 2
    connection.close()


class EchoingKeyHandler(http.server.BaseHTTPRequestHandler):
    """A hostile server written for this test: its (huge) reply repeats the key it was sent,
    and its thinking repeats the custom header's secret."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        said = f"Your key is {self.headers.get('Authorization')}. " + "padding " * 150_000
        body = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": said,
                            "reasoning_content": f"the header was {self.headers.get('X-Api-Token')}",
                        },
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 300_000, "total_tokens": 300_005},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_echoing_the_key_in_a_huge_reply_is_logged_masked(log: ConversationLog) -> None:
    hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoingKeyHandler)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hostile.server_address[1]}/v1"
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="h", url=url, key=SENTINEL_KEY, headers={"X-Api-Token": HEADER_SECRET}, models=["m"]
            )
        )
        result = nbllm.chat("Hello", model="h/m", stream=False)
        assert SENTINEL_KEY in result.text  # what the server said, as it said it, to the caller
    finally:
        hostile.shutdown()
    (row,) = rows(log)
    assert row["reply"].startswith("Your key is Bearer ") and len(row["reply"]) > 1_000_000
    assert SENTINEL_KEY not in row["reply"] and HEADER_SECRET not in row["reasoning"]
    assert log.path is not None
    data = b"".join(p.read_bytes() for p in log.path.parent.glob("log.db*"))
    assert SENTINEL_KEY.encode() not in data and HEADER_SECRET.encode() not in data
