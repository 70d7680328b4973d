"""Batch runs in a real kernel (ipykernel over ZMQ): the progress widget updates a few times a
second; its Stop button is heard while ``await nbllm.amap(...)`` and ``%%chat --map`` run (the
kernel's loop stays free), and an interrupt of a plain ``nbllm.map(...)`` cell returns the rows
done so far."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from nbllm.testing import LoopbackServer, serve
from tests.kernel_session import Execution, KernelSession

ROWS = 'import pandas\nrows = pandas.DataFrame({"text": [f"row {i}" for i in range(60)]})'


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with serve(echo=True, latency_s=0.1) as running:
        yield running


@pytest.fixture(scope="module")
def kernel(server: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    env = {"NBLLM_CONFIG_DIR": str(tmp_path_factory.mktemp("kernel-config"))}
    with KernelSession(env) as session:
        session.check("%load_ext nbllm\nimport nbllm")
        session.check(f"%llm_provider add loop --url {server.base_url} --auth none --model m")
        session.check(ROWS)
        yield session


def updates(execution: Execution) -> list[dict[str, Any]]:
    return [
        m["content"]["data"]["state"]
        for m in execution.of_type("comm_msg")
        if m["content"]["data"].get("method") == "update"
    ]


def bar_value(message: dict[str, Any]) -> int:
    """The progress bar's value in a widget update (0 for any other message)."""
    if message["msg_type"] != "comm_msg":
        return 0
    value = message["content"]["data"].get("state", {}).get("value")
    return value if isinstance(value, int) else 0


def stop_button(message: dict[str, Any]) -> str | None:
    """The comm id of the progress bar's Stop button, from the message that opens it."""
    if message["msg_type"] != "comm_open":
        return None
    state = message["content"]["data"].get("state", {})
    if state.get("_model_name") == "ButtonModel" and state.get("description") == "Stop":
        return str(message["content"]["comm_id"])
    return None


@pytest.mark.parametrize(
    ("cell", "table"),
    [
        ('out = await nbllm.amap("{text}", rows, model="loop/m", concurrency=1, checkpoint=False)', "out"),
        ("%%chat loop/m --map rows -o out2 --concurrency 1 --checkpoint none\n{text}", "out2"),
    ],
    ids=["amap", "chat-map"],
)
def test_the_stop_button_is_heard_while_the_run_goes(kernel: KernelSession, cell: str, table: str) -> None:
    button: list[str] = []
    clicked: list[float] = []

    def click_after_some_rows(message: dict[str, Any]) -> None:
        button.extend(filter(None, [stop_button(message)]))
        if button and not clicked and bar_value(message) >= 5:
            clicked.append(time.monotonic())
            click = {"comm_id": button[0], "data": {"method": "custom", "content": {"event": "click"}}}
            kernel.client.shell_channel.send(kernel.client.session.msg("comm_msg", click))

    started = time.monotonic()
    execution = kernel.collect(kernel.submit(cell), timeout=60, on_message=click_after_some_rows)
    elapsed = time.monotonic() - started
    assert execution.status == "ok" and clicked, "the Stop button was never found or clicked"
    assert elapsed < 60 * 0.1 * 0.6, "the click was not heard until the run ended"
    values = [s["value"] for s in updates(execution) if isinstance(s.get("value"), int)]
    assert values == sorted(values) and values[-1] < 60
    assert len(values) <= elapsed / 0.25 + 5  # a few redraws a second, not one per row
    result = kernel.check(f"print({table}.status.value_counts().to_dict())").stdout()
    assert "'not run'" in result and "'ok'" in result
    labels = [str(s.get("value")) for s in updates(execution)]
    assert any("Stopped: stopped with the Stop button" in label for label in labels)


def test_a_plain_cell_offers_the_interrupt_not_a_button_it_could_not_hear(kernel: KernelSession) -> None:
    execution = kernel.check('few = nbllm.map("{text}", rows.head(2), model="loop/m", checkpoint=False)')
    opened = [m["content"]["data"]["state"] for m in execution.of_type("comm_open")]
    assert not any(state.get("_model_name") == "ButtonModel" for state in opened)
    assert any("interrupt the kernel" in str(state.get("value")) for state in opened)


def test_an_interrupt_returns_the_rows_done_so_far(kernel: KernelSession, server: LoopbackServer) -> None:
    interrupted: list[float] = []
    asked_before = len(server.requests)

    def interrupt_after_some_rows(message: dict[str, Any]) -> None:
        if not interrupted and bar_value(message) >= 3:
            interrupted.append(time.monotonic())
            kernel.manager.interrupt_kernel()

    msg_id = kernel.submit(
        'part = nbllm.map("{text}", rows, model="loop/m", concurrency=2, checkpoint=False)'
    )
    execution = kernel.collect(msg_id, timeout=60, on_message=interrupt_after_some_rows)
    assert interrupted and execution.status == "ok"  # the cell returns the rows, not a traceback
    counts = kernel.check("print(part.status.value_counts().to_dict(), (part.status == 'ok').sum())").stdout()
    assert "'ok'" in counts and ("'cancelled'" in counts or "'not run'" in counts)
    done = int(counts.split()[-1])
    asked = len(server.requests) - asked_before
    assert done <= asked <= done + 2  # nothing sent after the interrupt but the rows in flight
