"""What the conformance run found, per server and behaviour, and where it is written.

A behaviour is ``ok`` when the server does what OpenAI's API does and nbllm gives the right
answer, or a ``deviation`` when the server does something else and nbllm copes (the reply is
right, or the error says what really happened). A behaviour nbllm gets wrong fails its test.
Notes must not hold timings or ids: the Compatibility page's table is compared with a fresh run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RESULTS_PATH = Path(__file__).resolve().parents[1] / "results" / "conformance.json"

Verdict = Literal["ok", "deviation"]

# Rows of the table, in order: (id, what the Compatibility table calls it).
BEHAVIOURS: list[tuple[str, str]] = [
    ("register", "register with `--key-env`"),
    ("doctor", "`%llm_provider test`"),
    ("discover", "`%llm_provider discover`"),
    ("stream", "streamed reply: text, time to first token, usage"),
    ("whole", "whole reply (`--no-stream`): text, usage"),
    ("wrong_key", "wrong key"),
    ("unknown_model", "unknown model id"),
    ("over_window_preflight", "prompt over the window: stopped before sending"),
    ("over_window_stream", "prompt over the window sent anyway, streamed"),
    ("over_window_whole", "prompt over the window sent anyway, whole"),
    ("tool_named_stream", "named `tool_choice`, streamed"),
    ("tool_named_whole", "named `tool_choice`, whole"),
    ("tool_auto_stream", "`tool_choice` auto, streamed"),
    ("tool_auto_whole", "`tool_choice` auto, whole"),
    ("chat_tools", "`%%chat --tools` (call, run, answer)"),
    ("json_mode", "JSON mode (`--json`)"),
    ("effort", "`--effort` in each reasoning style"),
    ("think_tags", "thinking in `<think>` tags split across chunks (a mock model)"),
    ("anthropic_stream", "Anthropic Messages (`--api anthropic`), streamed"),
    ("anthropic_whole", "Anthropic Messages, whole"),
    ("anthropic_tools", "Anthropic Messages: `%%chat --tools` (call, run, answer)"),
    ("responses_stream", "OpenAI Responses (`--api responses`), streamed"),
    ("responses_whole", "OpenAI Responses, whole"),
    ("responses_auto", "`--api auto`: Responses where served, else Chat Completions"),
    ("embed", "`nbllm.embed`: one vector per text, batched; `%llm_provider test` checks it"),
    ("embed_dimensions", "`nbllm.embed(..., dimensions=N)`"),
    ("schema", "typed reply (`schema=`, flagged `json_schema`): validated into the pydantic model"),
    ("map", "`nbllm.map`: 8 rows, 4 in flight, one status per row"),
    ("cancel", "cancel mid-stream, then call again"),
    ("concurrent", "16 concurrent streams"),
    (
        "concurrent_interrupting",
        "16 concurrent streams to a server that drops a reply for the next request "
        "(llama-cpp-python's default `--interrupt_requests True`)",
    ),
    ("fallback_rate_limited", "fallback through the gateway: 429 → next model"),
    ("fallback_dead_upstream", "fallback through the gateway: dead upstream → next model"),
    ("fallback_across_protocols", "fallback across protocols: Anthropic Messages 429 → Chat Completions"),
    (
        "gateway_cost",
        "the gateway's own cost (a whole reply's header, a stream's `usage.cost`) wins over `--price`",
    ),
    ("key_hidden", "the key never in any output"),
]
BEHAVIOUR_IDS = [behaviour for behaviour, _ in BEHAVIOURS]
GATEWAY_ONLY = {
    "think_tags",
    "fallback_rate_limited",
    "fallback_dead_upstream",
    "fallback_across_protocols",
    "gateway_cost",
}
"""Behaviours tested through the gateway's own models only (LiteLLM's mock and failing ones)."""
ANTHROPIC_BEHAVIOURS = {"anthropic_stream", "anthropic_whole", "anthropic_tools"}
ANTHROPIC_SERVERS = {"llama_server", "litellm"}
"""The servers here that serve Anthropic's ``/v1/messages``."""
EMBEDDING_SERVERS = {"llama_server", "litellm"}
"""The servers here that make one vector per text of SmolLM2 (the dimensions row needs one)."""
RESPONSES_BEHAVIOURS = {"responses_stream", "responses_whole"}
RESPONSES_SERVERS = {"transformers", "litellm", "llama_server"}
"""The servers here that serve OpenAI's ``/v1/responses``."""
INTERRUPTING_BEHAVIOURS = {"concurrent_interrupting"}
INTERRUPTING_SERVERS = {"llamacpp_python"}
"""The servers here that can drop a reply in progress for a newer request (with their defaults)."""


@dataclass
class Finding:
    verdict: Verdict
    note: str = ""
    """For a deviation: what the server does, then what nbllm does about it."""


@dataclass
class ServerInfo:
    name: str
    label: str


@dataclass
class Findings:
    """Everything one run found; written to `RESULTS_PATH` at the end of the session."""

    servers: dict[str, ServerInfo] = field(default_factory=dict)
    results: dict[str, dict[str, Finding]] = field(default_factory=dict)
    measured: dict[str, dict[str, float]] = field(default_factory=dict)
    """Figures for the closing notes and the curious (timings vary; never in the table)."""

    def ok(self, server: str, behaviour: str) -> None:
        self._put(server, behaviour, Finding("ok"))

    def deviation(self, server: str, behaviour: str, note: str) -> None:
        self._put(server, behaviour, Finding("deviation", note))

    def measure(self, server: str, figure: str, value: float) -> None:
        self.measured.setdefault(server, {})[figure] = round(value, 3)

    def _put(self, server: str, behaviour: str, finding: Finding) -> None:
        assert behaviour in BEHAVIOUR_IDS, f"unknown behaviour {behaviour!r}"
        self.results.setdefault(server, {})[behaviour] = finding

    def to_json(self) -> dict[str, object]:
        return {
            "servers": [{"name": info.name, "label": info.label} for info in self.servers.values()],
            "behaviours": [{"id": behaviour, "title": title} for behaviour, title in BEHAVIOURS],
            "results": {
                server: {
                    behaviour: {"verdict": finding.verdict, "note": finding.note}
                    for behaviour, finding in found.items()
                }
                for server, found in self.results.items()
            },
            "measured": self.measured,
        }

    def write(self, path: Path = RESULTS_PATH) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")


FINDINGS = Findings()
"""The one run of this session (pytest imports this module once)."""
