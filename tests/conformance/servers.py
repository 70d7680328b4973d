"""The real servers of the conformance suite: started on loopback for the session, stopped after.

Each server runs the bundled SmolLM2 (directly, or behind the LiteLLM gateway) and asks for its
own key, so the suite can register it with ``--key-env`` and check that the key never leaks.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from nbllm._providers.local import bundled_model_path, free_port
from tests.conformance.install_servers import (
    TRANSFORMERS_MODEL,
    hf_cache_path,
    litellm_path,
    llama_server_path,
    transformers_path,
)

MODEL = "smollm2"
CONTEXT_WINDOW = 2048
READY_TIMEOUT_S = 120.0
# Gateway models that answer by themselves (LiteLLM's mock_response) or fail on purpose.
GATEWAY_CANNED = "canned"
GATEWAY_RATE_LIMITED = "rate-limited"
GATEWAY_DEAD_UPSTREAM = "dead-upstream"
GATEWAY_PRICED = "priced"
"""A gateway model with prices of its own (dollars per token), which LiteLLM reports per call."""
PRICED_INPUT_PER_TOKEN = 0.000003
PRICED_OUTPUT_PER_TOKEN = 0.000015
GATEWAY_EMBEDDER = "embedder"
"""The gateway's embedding model: SmolLM2 on the llama-server instance that serves embeddings."""
CANNED_TEXT = "Hello from the gateway."
GATEWAY_THINKER = "thinker"
THINKER_THOUGHT = "The user asks for the capital of France. That is Paris."
THINKER_ANSWER = "The capital of France is Paris."
THINKER_TEXT = f"<think>{THINKER_THOUGHT}</think>{THINKER_ANSWER}"
"""A reasoning model without a reasoning parser, as a gateway relays it: thinking in tags."""


@dataclass
class Server:
    """One running server, as the suite sees it."""

    name: str
    """Short id used as the provider name and the test id (llamacpp_python, llama_server, litellm)."""
    title: str
    """What the Compatibility table calls it."""
    version: str
    base_url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path
    model: str = MODEL
    """The id the server serves SmolLM2 under."""
    gateway_models: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.title} {self.version}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _installed_version(entry: Path, package: str) -> str:
    """`package`'s version in the venv that `entry` (a script in its bin/) belongs to."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    found = subprocess.run([str(entry.parent / "python"), "-c", code], capture_output=True, text=True)
    return found.stdout.strip() or "?"


def new_key() -> str:
    # LiteLLM wants master keys to start with "sk-"; the others accept anything.
    return "sk-conformance-" + secrets.token_hex(12)


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)


def start_llamacpp_python(logs: Path, *, embeddings: bool = False, interrupting: bool = False) -> Server:
    """llama-cpp-python's FastAPI server, as the bundled local model runs it, but with its own key.

    ``--interrupt_requests False``: by default a new request aborts the one in progress; with
    `interrupting`, an instance left at that default. With `embeddings`, a second instance that
    serves ``/v1/embeddings`` (``--embedding True``; it has no setting for pooling, so SmolLM2,
    which names none, gets one vector per token)."""
    port, key = free_port(), new_key()
    name = "llamacpp_python" + ("_embeddings" if embeddings else "")
    name += "_interrupting" if interrupting else ""
    log = logs / f"{name}.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
        "--model_alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(CONTEXT_WINDOW), "--n_threads", "2", "--api_key", key,
        "--chat_format", "chatml-function-calling",
        *([] if interrupting else ["--interrupt_requests", "False"]),
        *(["--embedding", "True"] if embeddings else []),
    ]  # fmt: skip
    return Server(
        name=name,
        title="llama-cpp-python server",
        version=importlib.metadata.version("llama-cpp-python"),
        base_url=f"http://127.0.0.1:{port}/v1",
        key=key,
        process=_spawn(command, log),
        log=log,
    )


def start_llama_server(logs: Path, *, embeddings: bool = False) -> Server:
    """llama.cpp's C++ server: four slots, each held to the same 2,048-token window as the others.
    With `embeddings`, a second instance that serves ``/v1/embeddings`` (``--embeddings``, with
    mean pooling: SmolLM2's GGUF names no pooling type, and without one llama-server refuses
    OpenAI-style requests), as a user starts one. The chat rows keep their own instance."""
    binary = llama_server_path()
    port, key = free_port(), new_key()
    name = "llama_server" + ("_embeddings" if embeddings else "")
    log = logs / f"{name}.log"
    # `--version` prints e.g. "version: 0.5.0-dev (build 1, commit 0c1e570)" on stderr.
    said = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"version: (\S+) .*commit (\w+)", said.stdout + said.stderr)
    version = f"{found.group(1)} ({found.group(2)})" if found else "?"
    command = [
        str(binary), "--model", str(bundled_model_path()), "--alias", MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--threads", "2", "--api-key", key,
    ]  # fmt: skip
    if embeddings:
        # Its defaults otherwise (several slots sharing one KV cache). With --kv-unified-per-slot,
        # every text of a batch but the first got a wrong vector (checked on this build).
        command += ["--embeddings", "--pooling", "mean"]
    else:
        command += ["--parallel", "4", "--kv-unified-per-slot", str(CONTEXT_WINDOW)]
    return Server(
        name=name,
        title="llama.cpp llama-server",
        version=version,
        base_url=f"http://127.0.0.1:{port}/v1",
        key=key,
        process=_spawn(command, log),
        log=log,
    )


def start_litellm(logs: Path, upstream: Server, embeddings_upstream: Server) -> Server:
    """The LiteLLM proxy as a company gateway: SmolLM2 forwarded to `upstream` (and, as
    `GATEWAY_EMBEDDER`, to `embeddings_upstream` for embeddings), plus models that answer by
    themselves, hit a rate limit, or point at an upstream where nothing listens."""
    port, key = free_port(), new_key()
    dead_port = free_port()
    config = logs / "litellm.yaml"
    config.write_text(
        f"""model_list:
  - model_name: {MODEL}
    litellm_params: {{model: openai/{MODEL}, api_base: "{upstream.base_url}", api_key: "{upstream.key}"}}
  - model_name: {GATEWAY_EMBEDDER}
    litellm_params: {{model: openai/{MODEL}, api_base: "{embeddings_upstream.base_url}",
                      api_key: "{embeddings_upstream.key}"}}
    model_info: {{mode: embedding}}
  - model_name: {GATEWAY_CANNED}
    litellm_params: {{model: openai/{GATEWAY_CANNED}, api_key: unused, mock_response: "{CANNED_TEXT}"}}
  - model_name: {GATEWAY_PRICED}
    litellm_params: {{model: openai/{GATEWAY_PRICED}, api_key: unused, mock_response: "{CANNED_TEXT}",
                      input_cost_per_token: {PRICED_INPUT_PER_TOKEN},
                      output_cost_per_token: {PRICED_OUTPUT_PER_TOKEN}}}
  - model_name: {GATEWAY_THINKER}
    litellm_params: {{model: openai/{GATEWAY_THINKER}, api_key: unused, mock_response: "{THINKER_TEXT}"}}
  - model_name: {GATEWAY_RATE_LIMITED}
    litellm_params: {{model: openai/{GATEWAY_RATE_LIMITED}, api_key: unused,
                      mock_response: "litellm.RateLimitError"}}
  - model_name: {GATEWAY_DEAD_UPSTREAM}
    litellm_params: {{model: openai/dead, api_key: unused, api_base: "http://127.0.0.1:{dead_port}/v1"}}
litellm_settings:
  num_retries: 0
  # /v1/messages for an openai/ model goes to the upstream's /v1/responses unless this is set;
  # llama-cpp-python has no /v1/responses (see the Anthropic Messages rows' note).
  use_chat_completions_url_for_anthropic_messages: true
  request_timeout: 60
router_settings:
  # A deployment that failed is otherwise benched for a while (HTTP 429 "in cooldown"), and one
  # test's expected failure would then fail the next tests against the same model.
  disable_cooldowns: true
general_settings:
  master_key: "{key}"
"""
    )
    log = logs / "litellm.log"
    # No network: keep LiteLLM from fetching its model price map and from sending telemetry.
    env = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    entry = litellm_path()
    command = [str(entry), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    version = _installed_version(entry, "litellm")
    return Server(
        name="litellm",
        title="LiteLLM proxy",
        version=version,
        base_url=f"http://127.0.0.1:{port}/v1",
        key=key,
        process=_spawn(command, log, env),
        log=log,
        gateway_models=[
            GATEWAY_CANNED,
            GATEWAY_PRICED,
            GATEWAY_THINKER,
            GATEWAY_RATE_LIMITED,
            GATEWAY_DEAD_UPSTREAM,
        ],
    )


def start_transformers(logs: Path) -> Server:
    """Hugging Face's `transformers serve`, pinned to SmolLM2 from the hand-made cache, offline.
    It has no authentication: the key the suite registers is sent and ignored."""
    port = free_port()
    log = logs / "transformers.log"
    entry = transformers_path()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache_path())}
    command = [str(entry), "serve", "--host", "127.0.0.1", "--port", str(port), TRANSFORMERS_MODEL]
    version = _installed_version(entry, "transformers")
    return Server(
        name="transformers",
        title="transformers serve",
        version=version,
        base_url=f"http://127.0.0.1:{port}/v1",
        key=new_key(),
        process=_spawn(command, log, env),
        log=log,
        model=TRANSFORMERS_MODEL,
    )


def wait_ready(server: Server) -> None:
    """Wait until the server lists its models (with its key), or fail with its log."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            answer = httpx.get(
                f"{server.base_url}/models", headers={"Authorization": f"Bearer {server.key}"}, timeout=5
            )
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"{server.label} did not become ready; its log ends:\n{server.log_tail()}")


def missing_installs() -> list[str]:
    """What `install_servers.py` has not installed yet (empty when every server can start)."""
    wanted = {
        "llama-server": llama_server_path(),
        "LiteLLM": litellm_path(),
        "transformers serve": transformers_path(),
        "its model": hf_cache_path(),
    }
    return [name for name, path in wanted.items() if not path.exists()]
