"""The one preparation every entry point goes through before anything is sent: `nbllm.chat`,
`achat`, `astream`, a `%%chat` cell and its ``--compare`` columns, `nbllm.map` and ``%%chat
--map`` all end in `prepare_call`, which builds the request (its options checked once, by
`ChatRequest`), and runs the pre-flight: the tool choice names a given tool, a schema is not
asked twice, and every route is flagged for what the request needs (tools, JSON mode, a JSON
schema, images, reasoning effort). The context-window check needs the server's tokenizer,
so the attempt engine runs it per route (`nbllm._calls.context_fit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from nbllm._calls.request import TOOL_CHOICES, ChatRequest
from nbllm._constants import MAX_PROMPT_CHARS
from nbllm._exceptions import CapabilityError, PromptError, ToolError
from nbllm._providers.resolved import Resolved

IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
"""Content-part types that carry an image (OpenAI chat, Anthropic, Responses)."""


@dataclass(frozen=True)
class PreparedCall:
    """A call decided once: what to ask, whom (the model, then its fallbacks), and the reply's
    shape (a pydantic model, or None)."""

    request: ChatRequest
    routes: list[Resolved]
    schema: type[pydantic.BaseModel] | None = None

    @property
    def resolved(self) -> Resolved:
        return self.routes[0]


def prepare_call(
    request: ChatRequest, routes: Sequence[Resolved], schema: type[pydantic.BaseModel] | None = None
) -> PreparedCall:
    """`request` to `routes`, pre-flighted; raises a `PromptError` (and sends nothing) when it
    cannot go. `request` is the untyped one: `schema` is applied per round by the typed loop, in
    the way each model's flags allow, so it needs no flag of its own."""
    if not routes:
        raise ValueError("a call needs at least one route (see plan_routes)")
    if schema is not None and (request.json_mode or request.json_schema is not None):
        raise PromptError("give a schema or JSON mode, not both: a schema asks for JSON itself")
    check_tool_choice(request.tool_choice, tool_names(request.tools))
    check_size(request)
    check_capabilities(request, routes)
    return PreparedCall(request, list(routes), schema)


def check_size(request: ChatRequest) -> None:
    """Refuse a request far past any model's window, declared or not (`MAX_PROMPT_CHARS`)."""
    size = sum(len(part) for part in _texts(request.messages))
    if size > MAX_PROMPT_CHARS:
        raise PromptError(
            f"the messages hold {size:,} characters (about {size // 4:,} tokens), past any model's "
            f"context window (nbllm sends at most {MAX_PROMPT_CHARS:,}); nothing was sent",
            hint="send less: a part or a summary of the data, or start the conversation over (--new)",
        )


def _texts(messages: Sequence[dict[str, Any]]) -> list[str]:
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return texts


def tool_names(tools: Sequence[dict[str, Any]] | None) -> list[str]:
    """The function names of OpenAI tool schemas."""
    return [str((tool.get("function") or {}).get("name") or tool.get("name")) for tool in tools or []]


def check_tool_choice(choice: str | None, names: Sequence[str]) -> None:
    """A tool choice is auto, required, none, or the name of a tool the call offers."""
    if choice is None or (choice in TOOL_CHOICES and (names or choice != "required")):
        return
    if not names:
        raise ToolError(
            f"tool_choice {choice!r} needs tools, and none were given",
            hint="give the functions the model may call (tools=[...], or --tools in a cell)",
        )
    if choice not in names:
        raise ToolError(
            f"tool_choice {choice!r} is none of the tools given ({', '.join(names)}) nor "
            f"{'/'.join(TOOL_CHOICES)}",
            hint="name one of the tools, or let the model choose (auto)",
        )


def needs(request: ChatRequest) -> list[tuple[str, str]]:
    """(capability flag, what it is for) for each thing `request` asks of a model."""
    asked = [
        (bool(request.tools), "tools", "tool calling"),
        (request.json_mode, "json", "JSON mode"),
        (request.json_schema is not None, "json_schema", "a JSON schema (structured outputs)"),
        (_has_images(request.messages), "vision", "images"),
        (request.effort is not None, "reasoning", "reasoning (effort)"),
    ]
    return [(flag, what) for needed, flag, what in asked if needed]


def check_capabilities(request: ChatRequest, routes: Sequence[Resolved]) -> None:
    """Refuse, before any network call, a request some route is not flagged for."""
    wanted = needs(request)
    for resolved in routes:
        flags = resolved.spec.capabilities.as_flags()
        for flag, what in wanted:
            if not flags[flag]:
                command = f"%llm_provider model {resolved.provider.name} set {resolved.model} --caps {flag}"
                raise CapabilityError(
                    f"{resolved.qualified_name} is not flagged for {what} (the {flag!r} capability), "
                    "so nothing was sent",
                    hint=f"if the model supports it, run: {command}",
                )


def _has_images(messages: Sequence[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES for part in content
        ):
            return True
    return False
