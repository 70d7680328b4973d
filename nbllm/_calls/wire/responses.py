"""OpenAI's Responses API (``POST …/responses``), which newer OpenAI models require and LiteLLM
and ``transformers serve`` also speak: the request from nbllm's OpenAI-shaped messages, and the
reply, streamed as typed events or whole, read into the same `ReplyState` as Chat Completions.

Mapping: system messages become ``instructions``; messages become ``input`` items (text and
images as ``input_text``/``input_image`` parts, an assistant's text as ``output_text``, its tool
calls as ``function_call`` items, tool results as ``function_call_output`` items); tools are
flat ``{"type": "function", name, parameters}``; JSON mode and schemas go in ``text.format``;
``--effort`` in ``reasoning`` (with a summary asked for, which is the thinking that can be
shown); ``max_tokens`` is ``max_output_tokens`` (at least 16, the API's minimum); ``store``
is false, so nothing is kept on the server. ``stop`` and ``seed`` are not part of the API and
are not sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from nbllm._calls.errors import (
    SHAPE_ERRORS,
    json_object,
    protocol_error,
    stream_error,
)
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent, Usage
from nbllm._calls.wire.headers import provider_request
from nbllm._calls.wire.stream import read_events, typed_take, whole_events
from nbllm._providers.resolved import Resolved
from nbllm._providers.urls import responses_url

MIN_OUTPUT_TOKENS = 16
"""OpenAI refuses a smaller ``max_output_tokens`` (the endpoint check's one-token probe asks for 1)."""

THINKING_EVENTS = ("response.reasoning_summary_text.delta", "response.reasoning_text.delta")


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and JSON body a call will send."""
    provider, caps = resolved.provider, resolved.spec.capabilities
    stream = caps.streaming if request.stream is None else request.stream
    instructions, items = _input(request.messages)
    body: dict[str, Any] = {"model": resolved.model, "input": items, "stream": stream, "store": False}
    if instructions:
        body["instructions"] = instructions
    if request.max_tokens is not None:
        body["max_output_tokens"] = max(request.max_tokens, MIN_OUTPUT_TOKENS)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        body["tools"] = [_tool(schema) for schema in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice if choice in ("auto", "required", "none") else {"type": "function", "name": choice}
        )
    if request.json_schema is not None:
        schema = request.json_schema
        named = schema if "schema" in schema else {"name": "reply", "schema": schema}
        body["text"] = {"format": {"type": "json_schema", **named}}
    elif request.json_mode:
        body["text"] = {"format": {"type": "json_object"}}
    if request.effort is not None:
        body["reasoning"] = {"effort": request.effort}
        if request.effort != "none":
            body["reasoning"]["summary"] = "auto"
    return provider_request(
        provider,
        body,
        url=responses_url(provider.wire_url()),
        shown_url=responses_url(provider.url),
        stream=stream,
    )


def _tool(schema: dict[str, Any]) -> dict[str, Any]:
    function = schema.get("function", schema)
    tool = {"type": "function", "name": function["name"], "parameters": function.get("parameters") or {}}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _input(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            instructions.append(_text_of(content))
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id", ""),
                    "output": _text_of(content),
                }
            )
        elif role == "assistant":
            text = _text_of(content)
            if text:
                items.append({"role": "assistant", "content": [{"type": "output_text", "text": text}]})
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id", ""),
                        "name": function.get("name", ""),
                        "arguments": function.get("arguments") or "{}",
                    }
                )
        else:
            items.append({"role": "user", "content": _user_parts(content)})
    return "\n\n".join(s for s in instructions if s), items


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return [{"type": "input_text", "text": "" if content is None else str(content)}]
    parts = []
    for part in content:
        if part.get("type") == "image_url":
            parts.append(
                {"type": "input_image", "image_url": str((part.get("image_url") or {}).get("url", ""))}
            )
        else:
            parts.append({"type": "input_text", "text": str(part.get("text", ""))})
    return parts


# -- the reply ---------------------------------------------------------------------------------


def read_stream(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    """The stream's events as its bytes arrive (see `read_events`), each read taken by `_take`."""
    return read_events(response, resolved, state, _take)


def _apply(
    kind: str,
    payload: dict[str, Any],
    resolved: Resolved,
    state: ReplyState,
    pieces: list[str],
    thoughts: list[str],
) -> bool:
    """One event; True at ``response.completed`` or ``.incomplete``."""
    if kind == "response.output_text.delta":
        text = payload["delta"]
        if text.__class__ is not str:
            raise TypeError(f"output_text.delta is {type(text).__name__}, not a string")
        if text:
            if state.first_answer_at is None:
                state.answered(time.perf_counter())
            pieces.append(text)
    elif kind in THINKING_EVENTS:
        thoughts.append(str(payload["delta"]))
    elif kind == "response.output_item.added":
        _item_added(payload, state)
    elif kind == "response.function_call_arguments.delta":
        index = int(payload.get("output_index", 0))
        state.tools.add({"index": index, "function": {"arguments": str(payload["delta"])}})
    elif kind in ("response.completed", "response.incomplete"):
        _finished(payload.get("response") or {}, state, kind)
        state.saw_done = True
        return True
    elif kind in ("response.failed", "error"):
        raise stream_error(payload, resolved, state, _error_object(payload))
    return False


_take = typed_take(_apply)


def _item_added(payload: dict[str, Any], state: ReplyState) -> None:
    item = payload["item"]
    if item.get("type") == "function_call":
        state.answered(time.perf_counter())
        call = {
            "index": int(payload.get("output_index", 0)),
            "id": item.get("call_id") or item.get("id"),
            "function": {"name": item["name"]},
        }
        if item.get("arguments"):
            call["function"]["arguments"] = item["arguments"]
        state.tools.add(call)


def _finished(response: dict[str, Any], state: ReplyState, kind: str) -> None:
    """``response.completed`` or ``.incomplete``: the finish reason and the usage."""
    if kind == "response.incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        state.finish_reason = "length" if reason in (None, "max_output_tokens") else str(reason)
    else:
        state.finish_reason = "tool_calls" if state.tools.calls() else "stop"
    usage = response.get("usage")
    if isinstance(usage, dict):
        prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
        if isinstance(prompt, int) and isinstance(completion, int) and prompt >= 0 and completion >= 0:
            state.usage = Usage(prompt, completion)
        thinking = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
        if isinstance(thinking, int) and thinking > 0:
            state.reasoning_tokens = thinking


UNFINISHED_STATUSES = frozenset({"failed", "cancelled", "in_progress", "queued"})
"""A whole Responses reply in one of these states is not an answer, even with text in it."""


async def read_whole(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    text = (await response.aread()).decode("utf-8", errors="replace")
    payload = json_object(text, resolved, state, "reply")
    if payload.get("error"):
        raise stream_error(payload, resolved, state, _error_object(payload))
    pieces: list[str] = []
    thoughts: list[str] = []
    try:
        for index, item in enumerate(payload.get("output") or []):
            kind = item.get("type")
            if kind == "message":
                pieces += [
                    str(p.get("text", ""))
                    for p in item.get("content") or []
                    if p.get("type") == "output_text"
                ]
            elif kind == "reasoning":
                parts = (item.get("summary") or []) + (item.get("content") or [])
                thoughts += [str(p.get("text", "")) for p in parts]
            elif kind == "function_call":
                call = {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}
                state.tools.add(
                    {"index": index, "id": item.get("call_id") or item.get("id"), "function": call}
                )
        status = payload.get("status")
    except SHAPE_ERRORS as exc:
        raise protocol_error(resolved, state, f"sent a reply nbllm cannot read ({exc})") from exc
    if status in UNFINISHED_STATUSES:  # whatever text it holds, this response did not complete
        problem = payload.get("error") or {"message": f"the response's status is {status!r}, not completed"}
        raise stream_error(payload, resolved, state, problem)
    _finished(payload, state, "response.incomplete" if status == "incomplete" else "response.completed")
    for event in whole_events(state, "".join(thoughts), "".join(pieces)):
        yield event


def _error_object(payload: dict[str, Any]) -> Any:
    """Where the Responses API puts an error: the event's own, its response's, or the event."""
    return payload.get("error") or (payload.get("response") or {}).get("error") or payload
