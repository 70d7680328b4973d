"""Approval in a real kernel (issue 31): the Approve and Deny buttons clicked through their
comms, as a front end does, decide whether the tool runs, and the model's next request carries
the right result; with nobody to click, the call is denied at the timeout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nbllm.testing import LoopbackServer, ScriptedToolCall, serve
from tests.kernel_session import KernelSession

TOOL = """
removed = []

def delete_file(path: str) -> str:
    \"\"\"Delete a file.\"\"\"
    removed.append(path)
    return f"deleted {path}"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with serve(reply="Done.") as running:
        yield running


@pytest.fixture(scope="module")
def kernel(server: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    env = {"NBLLM_CONFIG_DIR": str(tmp_path_factory.mktemp("tools-config")), "NBLLM_LIVE": "1"}
    with KernelSession(env) as session:
        session.check("%load_ext nbllm")
        session.check(
            f"%llm_provider add loop --url {server.base_url} --auth none --model m=100000 --caps tools"
        )
        session.check(TOOL)
        yield session


def clicker(kernel: KernelSession, label: str) -> Any:
    """An iopub hook that clicks the button called `label` as soon as it is opened."""

    def on_message(message: dict[str, Any]) -> None:
        if message["msg_type"] != "comm_open":
            return
        state = message["content"]["data"].get("state", {})
        if state.get("_model_name") == "ButtonModel" and state.get("description") == label:
            click = {
                "comm_id": message["content"]["comm_id"],
                "data": {"method": "custom", "content": {"event": "click"}},
            }
            kernel.client.shell_channel.send(kernel.client.session.msg("comm_msg", click))

    return on_message


def last_tool_result(server: LoopbackServer) -> str:
    messages = [r for r in server.requests if r.method == "POST"][-1].body["messages"]
    return str(messages[-1]["content"])


@pytest.mark.parametrize(("label", "ran"), [("Approve", True), ("Deny", False)])
def test_a_click_decides_whether_the_tool_runs(
    kernel: KernelSession, server: LoopbackServer, label: str, ran: bool
) -> None:
    server.tool_calls, server.tool_reply = [ScriptedToolCall("delete_file", {"path": f"{label}.txt"})], "Ok."
    msg_id = kernel.submit(f"%%chat loop/m --tools delete_file -c {label}\nClean up.")
    execution = kernel.collect(msg_id, timeout=60, on_message=clicker(kernel, label))
    assert execution.status == "ok"
    removed = kernel.check("print(removed)").stdout()
    assert (f"{label}.txt" in removed) is ran
    assert last_tool_result(server) == (
        "deleted Approve.txt"
        if ran
        else "the user denied this call; do not try it again unless the user asks for it"
    )
    lines = [m["content"]["data"].get("text/plain", "") for m in execution.all_displays()]
    assert any(line.startswith("\N{CHECK MARK} approved" if ran else "\N{BALLOT X} denied") for line in lines)


def test_with_nobody_to_click_the_call_is_denied_at_the_timeout(
    kernel: KernelSession, server: LoopbackServer
) -> None:
    kernel.check("%config ChatMagics.approval_timeout_s = 1.5")
    server.tool_calls, server.tool_reply = [ScriptedToolCall("delete_file", {"path": "late.txt"})], "Ok."
    execution = kernel.check("%%chat loop/m --tools delete_file -c nobody\nClean up.", timeout=60)
    assert "late.txt" not in kernel.check("print(removed)").stdout()
    assert last_tool_result(server).startswith("nobody approved this call in time")
    ticking = [
        m["content"]["data"]["state"].get("value", "")
        for m in execution.of_type("comm_msg")
        if "state" in m["content"]["data"]
    ]
    assert any("denied in" in str(value) for value in ticking)  # the countdown showed
