"""What a call asks (`ChatRequest`) and the exact HTTP request one attempt sends
(`PreparedRequest`), whatever the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbllm._providers.auth import mask_headers


@dataclass
class ChatRequest:
    """What to ask: the messages and the request options (None means "server default")."""

    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    """auto, required, none, or the name of one function."""
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    stream: bool | None = None
    """None: stream when the model's capabilities allow it."""


OWN_HEADERS = frozenset({"Content-Type", "Accept", "User-Agent"})
"""The headers nbllm itself sets: the only ones a redirect to another host receives."""


@dataclass
class PreparedRequest:
    """The exact request one attempt sends. `secrets` are header values never to show;
    `own_headers` names the headers that are not the provider's (no key, no configured header)."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    secrets: set[str] = field(default_factory=set)
    own_headers: frozenset[str] = OWN_HEADERS

    def masked_headers(self) -> dict[str, str]:
        """The headers for display, every secret replaced by a mask."""
        return mask_headers(self.headers, self.secrets)
