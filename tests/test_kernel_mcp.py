"""MCP servers as tool sources (issue 31) in a real kernel: mcp-server-time, from the package
registry, called over stdio through a scripted tool call, its answer reaching the model; its
tools need approval unless the user trusted its read-only hints; its process is gone after
the server is removed and after the kernel shuts down (checked by PID)."""

from __future__ import annotations

import ast
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbllm.testing import LoopbackServer, ScriptedToolCall, serve
from tests.kernel_session import KernelSession

SERVER = shutil.which("mcp-server-time") or str(Path(sys.executable).parent / "mcp-server-time")
# The test extra installs both servers: a missing one is a failure here, not a skip.
assert Path(SERVER).exists(), "needs mcp-server-time: pip install -e '.[test]'"


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with serve(reply="Done.") as running:
        yield running


def last_tool_result(server: LoopbackServer) -> str:
    messages = [r for r in server.requests if r.method == "POST"][-1].body["messages"]
    return str(messages[-1]["content"])


def test_an_mcp_tool_answers_the_model_and_its_process_ends_with_the_kernel(
    server: LoopbackServer, tmp_path: Path
) -> None:
    env = {"NBLLM_CONFIG_DIR": str(tmp_path / "config"), "NBLLM_LIVE": "0"}
    kernel = KernelSession(env)
    try:
        kernel.check("%load_ext nbllm")
        kernel.check(
            f"%llm_provider add loop --url {server.base_url} --auth none --model m=100000 --caps tools"
        )
        kernel.check(f"%llm_mcp add time --trust-read-only -- {SERVER} --local-timezone UTC")
        listed = kernel.check("%llm_mcp tools time")
        assert "get_current_time" in str(listed.displays()) and "read-only (hint)" in str(listed.displays())
        server.tool_calls = [ScriptedToolCall("get_current_time", {"timezone": "Europe/Paris"})]
        server.tool_reply = "It is evening in Paris."
        kernel.check("%%chat loop/m --tools mcp:time\nWhat time is it in Paris?")
        assert '"timezone": "Europe/Paris"' in last_tool_result(server)  # the server's own answer
        record = kernel.check(
            "import nbllm\nr = [h for h in nbllm.history() if h.kind == 'tool'][-1]\nprint(r.approval)"
        )
        assert record.stdout().strip() == "read-only"  # trusted hint: no approval asked
        pids = kernel.check(
            "from nbllm._cells.mcp_servers import get_mcp_servers\nprint(get_mcp_servers().get('time').pids)"
        )
        (pid,) = ast.literal_eval(pids.stdout())
        assert alive(pid)
    finally:
        kernel.close()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), "the MCP server outlived its kernel"


@contextlib.contextmanager
def asking_kernel(server: LoopbackServer, tmp_path: Path) -> Iterator[KernelSession]:
    """A kernel with the loopback model, where an unapproved tool call is denied after 1 s."""
    env = {"NBLLM_CONFIG_DIR": str(tmp_path / "config"), "NBLLM_LIVE": "0"}
    with KernelSession(env) as kernel:
        kernel.check("%load_ext nbllm\n%config ChatMagics.approval_timeout_s = 1")
        kernel.check(
            f"%llm_provider add loop --url {server.base_url} --auth none --model m=100000 --caps tools"
        )
        yield kernel


def test_untrusted_mcp_tools_wait_for_approval_and_remove_stops_the_process(
    server: LoopbackServer, tmp_path: Path
) -> None:
    with asking_kernel(server, tmp_path) as kernel:
        kernel.check(f"%llm_mcp add clock -- {SERVER} --local-timezone UTC")
        server.tool_calls = [ScriptedToolCall("get_current_time", {"timezone": "Asia/Tokyo"})]
        kernel.check("%%chat loop/m --tools mcp:clock/get_current_time\nTime in Tokyo?")
        assert last_tool_result(server).startswith("nobody approved this call in time")
        pids = kernel.check(
            "from nbllm._cells.mcp_servers import get_mcp_servers\nprint(get_mcp_servers().get('clock').pids)"
        )
        (pid,) = ast.literal_eval(pids.stdout())
        kernel.check("%llm_mcp remove clock")
        assert not alive(pid)
        missing = kernel.execute("%%chat loop/m --tools mcp:clock\nAgain?")
        shown = str(missing.displays()) + str(missing.reply)
        assert missing.status == "error" and "no MCP server named 'clock'" in shown


GIT_SERVER = shutil.which("mcp-server-git") or str(Path(sys.executable).parent / "mcp-server-git")


def test_mcp_server_git_reads_a_repository_and_cannot_commit_unapproved(
    server: LoopbackServer, tmp_path: Path
) -> None:
    assert Path(GIT_SERVER).exists(), "needs mcp-server-git: pip install -e '.[test]'"
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "notes.txt").write_text("first\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "Seed the notes"], check=True)
    (repo / "notes.txt").write_text("first\nsecond\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    with asking_kernel(server, tmp_path) as kernel:
        kernel.check(f"%llm_mcp add git --trust-read-only -- {GIT_SERVER} --repository {repo}")
        server.tool_calls = [
            ScriptedToolCall("git_log", {"repo_path": str(repo)}),
            ScriptedToolCall("git_commit", {"repo_path": str(repo), "message": "Injected"}),
        ]
        server.tool_reply = "One commit so far."
        kernel.check("%%chat loop/m --tools mcp:git --approve ask\nWhat is in the history?")
        messages = [r for r in server.requests if r.method == "POST"][-1].body["messages"]
        log, commit = [str(m["content"]) for m in messages if m["role"] == "tool"]
        assert "Seed the notes" in log  # the read-only tool ran on the real repository
        assert commit.startswith("nobody approved this call in time")
        count = subprocess.run([*git, "rev-list", "--count", "HEAD"], capture_output=True, text=True)
        assert count.stdout.strip() == "1"  # the unapproved commit never happened
