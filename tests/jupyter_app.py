"""A real Jupyter server (JupyterLab 4 or Notebook 7) on loopback for the browser tests,
isolated from the user's own Jupyter settings, with a token and no network lookups."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_setting(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


class JupyterApp:
    """``jupyter lab`` or ``jupyter notebook`` serving `root`, stopped by `close`."""

    def __init__(self, app: str, root: Path, env: dict[str, str]) -> None:
        self.app, self.root = app, root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        home = root.parent / f"{app}-home"
        settings = home / "config" / "lab" / "user-settings" / "@jupyterlab"
        # Render every cell: with windowing on, cells off screen have no DOM to click.
        tracker = settings / "notebook-extension" / "tracker.jupyterlab-settings"
        write_setting(tracker, {"windowingMode": "none"})
        # No "get Jupyter news?" toast over the page (and no request for the news).
        notifications = settings / "apputils-extension" / "notification.jupyterlab-settings"
        write_setting(notifications, {"fetchNews": "false"})
        self.log_path = home / "server.log"
        full_env = {
            **os.environ,
            **env,
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        }
        command = [
            sys.executable, "-m", "jupyter", app, "--no-browser",
            f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]  # fmt: skip
        if os.geteuid() == 0:  # CI containers run as root
            command.append("--allow-root")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        path = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.base}/{path}/{name}?token={self.token}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited: {self.log()}")
            try:
                status_url = f"{self.base}/api/status?token={self.token}"
                with urllib.request.urlopen(status_url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter {self.app} did not start in {START_TIMEOUT_S:.0f} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
