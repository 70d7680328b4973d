"""What a call asks (`ChatRequest`) and the exact HTTP request one attempt sends
(`PreparedRequest`), whatever the protocol."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from nbllm._constants import EFFORTS, OWN_HEADERS
from nbllm._exceptions import PromptError
from nbllm._providers.auth import mask_headers

TOOL_CHOICES = ("auto", "required", "none")


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
    effort: str | None = None
    """How hard a reasoning model thinks: none, low, medium or high (None: the server's default)."""
    check_context: bool = True
    """Refuse to send a prompt that does not fit the model's declared window (see
    `nbllm._calls.context_fit`)."""

    def __post_init__(self) -> None:
        check_options(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            stop=self.stop,
            stream=self.stream,
            tool_choice=self.tool_choice,
            json_mode=self.json_mode,
            effort=self.effort,
        )
        if not isinstance(self.messages, list):
            raise PromptError("the messages should be a list of dicts with 'role' and 'content'")
        for message in self.messages:
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                shown = type(message).__name__
                raise PromptError(
                    f"each message should be a dict with a 'role' and 'content', not {shown}",
                    hint='e.g. [{"role": "user", "content": "Hi"}]',
                )
        if self.tools is not None and not all(isinstance(t, dict) for t in self.tools):
            raise PromptError("tools should be Python functions or OpenAI tool schemas (dicts)")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise PromptError("json_schema should be a JSON schema, as a dict")
        _check_sendable("the messages", self.messages)
        _check_sendable("json_schema", self.json_schema)
        _check_sendable("tools", self.tools)


def _check_sendable(what: str, value: Any) -> None:
    """Refuse, before sending, what cannot go on the wire as JSON in UTF-8: a Python set, a
    date, an object, or text with a lone surrogate (pasted from a broken decode)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        reason = "a lone surrogate character" if isinstance(exc, UnicodeError) else str(exc)
        raise PromptError(
            f"{what} cannot be sent as JSON: {reason}",
            hint="use lists instead of sets, strings instead of other objects, and valid text",
        ) from None


def check_options(
    *,
    temperature: Any = None,
    max_tokens: Any = None,
    seed: Any = None,
    stop: Any = None,
    stream: Any = None,
    tool_choice: Any = None,
    json_mode: Any = False,
    effort: Any = None,
) -> None:
    """Refuse, before anything is sent, an option of the wrong type or range; the error names it."""
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise PromptError(
                f"temperature should be a number, not {temperature!r}", hint="e.g. temperature=0.2"
            )
        if not math.isfinite(temperature) or not 0 <= temperature <= 2:
            raise PromptError(f"temperature should be between 0 and 2, not {temperature!r}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise PromptError(f"max_tokens should be a whole number of at least 1, not {max_tokens!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise PromptError(f"seed should be a whole number, not {seed!r}")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        raise PromptError(f"stop should be a list of non-empty strings, not {stop!r}")
    if stream is not None and not isinstance(stream, bool):
        raise PromptError(f"stream should be True or False, not {stream!r}")
    if not isinstance(json_mode, bool):
        raise PromptError(f"json should be True or False, not {json_mode!r}")
    if effort is not None and effort not in EFFORTS:
        raise PromptError(
            f"effort should be one of {', '.join(EFFORTS)}, not {effort!r}",
            hint="none turns thinking off where the model allows it",
        )
    if tool_choice is not None and not (isinstance(tool_choice, str) and tool_choice.strip()):
        raise PromptError(
            f"tool_choice should be one of {', '.join(TOOL_CHOICES)} or a tool's name, not {tool_choice!r}"
        )


@dataclass
class PreparedRequest:
    """The exact request one attempt sends. `secrets` are header values never to show;
    `own_headers` names the headers that are not the provider's (no key, no configured header).
    `shown_url` and `shown_fields` are the URL and the provider's `extra_body` as written, with
    their ``${VAR}`` references, for whatever shows the request instead of sending it."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    secrets: set[str] = field(default_factory=set)
    own_headers: frozenset[str] = OWN_HEADERS
    shown_url: str | None = None
    shown_fields: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> tuple[str, dict[str, Any]]:
        """The URL and body as a dry run shows them: references not expanded."""
        return self.shown_url or self.url, {**self.body, **self.shown_fields}

    def masked_headers(self) -> dict[str, str]:
        """The headers for display, every secret replaced by a mask."""
        return mask_headers(self.headers, self.secrets)
