"""The public functions: `chat` (sync), `achat` (async), `astream` (events), `history`, `panel`.
The panel is imported when first used, so a plain script never loads ipywidgets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from nbllm._calls.call import plan_routes, run_call, run_call_sync, stream_call, to_messages
from nbllm._calls.history import CallRecord, get_history
from nbllm._calls.request import ChatRequest
from nbllm._calls.results import ChatEvent, ChatResult
from nbllm._providers.resolved import Resolved

Prompt = str | Sequence[dict[str, Any]]


def _build(
    prompt: Prompt,
    model: str | None,
    system: str | None,
    fallback: str | Sequence[str] | None,
    options: dict[str, Any],
) -> tuple[ChatRequest, list[Resolved]]:
    json_mode = bool(options.pop("json", False))
    request = ChatRequest(messages=to_messages(prompt, system), json_mode=json_mode, **options)
    return request, plan_routes(model, fallback)


def chat(
    prompt: Prompt,
    model: str | None = None,
    *,
    system: str | None = None,
    fallback: str | Sequence[str] | None = None,
    **options: Any,
) -> ChatResult:
    """Ask `model` and wait for the whole reply. Safe inside a running kernel (the call runs
    on a background event loop). Options: temperature, max_tokens, stop, seed, tools,
    tool_choice, json, json_schema, stream. Raises an `nbllm.NbllmError` subclass on failure;
    the partial result is on the error's ``result``."""
    request, routes = _build(prompt, model, system, fallback, options)
    return run_call_sync(request, routes)


async def achat(
    prompt: Prompt,
    model: str | None = None,
    *,
    system: str | None = None,
    fallback: str | Sequence[str] | None = None,
    **options: Any,
) -> ChatResult:
    """`chat`, awaited on the caller's event loop."""
    request, routes = _build(prompt, model, system, fallback, options)
    return await run_call(request, routes)


async def astream(
    prompt: Prompt,
    model: str | None = None,
    *,
    system: str | None = None,
    fallback: str | Sequence[str] | None = None,
    **options: Any,
) -> AsyncIterator[ChatEvent]:
    """Yield `TokenEvent`, `StatusEvent` and `ToolCallEvent` as the reply arrives, then `DoneEvent`."""
    request, routes = _build(prompt, model, system, fallback, options)
    async for event in stream_call(request, routes):
        yield event


def history() -> list[CallRecord]:
    """Every recorded call of this session, oldest first."""
    return get_history().records()


def panel() -> Any:
    """The ipywidgets panel over providers, models and the call history (see `nbllm._panel`)."""
    from nbllm._panel import Panel

    return Panel()
