"""The conversation log in real kernels (issue 32): two kernels with ``NBLLM_LOG`` writing to one
database at once lose nothing, each call is labelled with the cell id the front end sent and the
notebook's path; and a conversation exported as a notebook runs under nbval against the
loopback server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbllm.testing import LoopbackServer, serve
from tests.helpers import SENTINEL_KEY
from tests.kernel_session import Execution, KernelSession

CALLS_PER_KERNEL = 12


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with serve(reply="Logged reply.", api_key=SENTINEL_KEY) as running:
        yield running


def run_in_cell(kernel: KernelSession, code: str, cell_id: str) -> Execution:
    """Execute as JupyterLab does: the execute request's metadata names the cell."""
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    message = kernel.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
    kernel.client.shell_channel.send(message)
    execution = kernel.collect(message["header"]["msg_id"])
    assert execution.status == "ok", execution.stdout()
    return execution


def start(kernel: KernelSession, server: LoopbackServer, name: str) -> None:
    kernel.check(f"__session__ = '/home/me/{name}.ipynb'\n%load_ext nbllm")
    kernel.check(f"%llm_provider add loop --url {server.base_url} --key-env LOOP_KEY --model m=100000")


def test_two_kernels_log_to_one_database_at_once(server: LoopbackServer, tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    env = {"NBLLM_LOG": str(path), "LOOP_KEY": SENTINEL_KEY, "NBLLM_LIVE": "0"}
    kernels = [KernelSession(env | {"NBLLM_CONFIG_DIR": str(tmp_path / f"c{n}")}) for n in range(2)]
    try:
        for number, kernel in enumerate(kernels):
            start(kernel, server, f"analysis-{number}")

        def chat_in(number: int) -> None:
            for call in range(CALLS_PER_KERNEL):
                run_in_cell(
                    kernels[number], f"%%chat loop/m -c k{number}\nQuestion {call}", f"cell-{number}-{call}"
                )

        threads = [threading.Thread(target=chat_in, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        for kernel in kernels:
            status = kernel.check("%llm_log").stdout()
            assert f"{CALLS_PER_KERNEL} calls written this session" in status
    finally:
        for kernel in kernels:
            kernel.close()
    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT notebook, conversation, cell_id, status FROM calls").fetchall()
    connection.close()
    assert len(rows) == 2 * CALLS_PER_KERNEL
    assert {(r[0], r[1]) for r in rows} == {
        ("/home/me/analysis-0.ipynb", "k0"),
        ("/home/me/analysis-1.ipynb", "k1"),
    }
    assert {r[2] for r in rows} == {f"cell-{n}-{c}" for n in range(2) for c in range(CALLS_PER_KERNEL)}
    assert {r[3] for r in rows} == {"ok"}
    assert SENTINEL_KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("shared.db*"))


def test_an_exported_notebook_runs_under_nbval(server: LoopbackServer, tmp_path: Path) -> None:
    config = tmp_path / "config"
    env = {"NBLLM_CONFIG_DIR": str(config), "LOOP_KEY": SENTINEL_KEY, "NBLLM_LIVE": "0"}
    with KernelSession(env) as kernel:
        start(kernel, server, "trip")
        kernel.check("%llm_provider save")
        kernel.check("%%chat loop/m -c trip --system 'You plan trips.'\nWhere in {{May}}?")
        kernel.check("%%chat loop/m -c trip\nAnd in June?")
        kernel.check(f"%llm_export trip --to ipynb {tmp_path / 'trip.ipynb'}")
    assert SENTINEL_KEY not in (tmp_path / "trip.ipynb").read_text()
    before = len(server.requests)
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            str(tmp_path / "trip.ipynb"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=tmp_path,
    )
    assert finished.returncode == 0, finished.stdout[-3000:]
    asked = [r for r in server.requests[before:] if r.method == "POST"]
    assert [m["content"] for m in asked[-1].body["messages"]] == [
        "You plan trips.",
        "Where in {May}?",
        "Logged reply.",
        "And in June?",
    ]
