"""A real ipykernel driven over ZMQ with jupyter_client, for kernel tests and benchmarks.

The kernel runs this interpreter (a kernelspec written to a temporary folder), so
it sees the same installed nbllm. `execute` returns every iopub message of the
cell and its execute_reply; `cpu_s` reads the kernel's CPU time from /proc.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

KERNEL_NAME = "nbllm-test-python"


@dataclass
class Execution:
    msg_id: str
    iopub: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] | None = None

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.iopub if m["msg_type"] in types]

    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout"
        )

    def displays(self) -> list[dict[str, Any]]:
        """The reply's display messages: all but those of the in-cell Stop button."""
        return [m for m in self.all_displays() if not m["content"]["metadata"].get("nbllm", {}).get("stop")]

    def all_displays(self) -> list[dict[str, Any]]:
        return self.of_type("display_data", "update_display_data")

    @property
    def status(self) -> str:
        return self.reply["content"]["status"] if self.reply else "no reply"


def wire_size(message: dict[str, Any]) -> int:
    """About the bytes of a message on the wire: its four JSON frames plus the HMAC signature."""
    frames = ("header", "parent_header", "metadata", "content")
    return sum(len(json.dumps(message[f], default=str)) for f in frames) + 64


class KernelSession:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="nbllm-kernel-")
        spec_dir = Path(self._folder.name) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "nbllm test", "language": "python"})
        )
        specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
        self.manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
        self.manager.start_kernel(env={**os.environ, **(env or {})})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        self._folder.cleanup()

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return int(self.manager.provisioner.process.pid)  # type: ignore[union-attr]

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def submit(self, code: str) -> str:
        return str(self.client.execute(code, allow_stdin=False))

    def collect(self, msg_id: str, timeout: float = 60, on_message: Any = None) -> Execution:
        """Gather a cell's iopub messages until it is idle, then its reply."""
        execution = Execution(msg_id)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell {msg_id} did not finish in {timeout} s")
            try:
                message = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            message["received_at"] = time.monotonic()
            execution.iopub.append(message)
            if on_message is not None:
                on_message(message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        while execution.reply is None:
            reply = self.client.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                execution.reply = reply
        return execution

    def execute(self, code: str, timeout: float = 60) -> Execution:
        return self.collect(self.submit(code), timeout)

    def check(self, code: str, timeout: float = 60) -> Execution:
        """Execute and insist the cell succeeded."""
        execution = self.execute(code, timeout)
        if execution.status != "ok":
            error = execution.reply["content"] if execution.reply else {}
            raise AssertionError(f"cell failed: {code!r}: {error.get('ename')}: {error.get('evalue')}")
        return execution
