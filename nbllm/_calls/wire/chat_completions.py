"""OpenAI Chat Completions (``POST .../chat/completions``): the request body, and the reply,
streamed as server-sent events or whole, read into a `ReplyState`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from nbllm._calls.errors import (
    SHAPE_ERRORS,
    clip,
    json_object,
    protocol_error,
    stream_error,
)
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent, Usage
from nbllm._calls.sse import ServerSentEvent
from nbllm._calls.wire.headers import provider_request
from nbllm._calls.wire.reasoning import effort_fields, sends_reasoning_back, style_for
from nbllm._calls.wire.stream import read_events, whole_events
from nbllm._calls.wire.think_tags import ThinkTags
from nbllm._exceptions import StreamError
from nbllm._providers.resolved import Resolved

THINKING_KEYS = frozenset({"reasoning_content", "reasoning_signature"})
"""Keys of an assistant turn that carry its thinking back (see `assistant_message`); Chat
Completions sends ``reasoning_content`` where the provider requires it and never the signature."""

MAX_TOKEN_COUNT = 10**9
"""Token counts above this are not counts (a server once sent 1e999)."""


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and JSON body a call will send."""
    provider, caps = resolved.provider, resolved.spec.capabilities
    stream = caps.streaming if request.stream is None else request.stream
    style = style_for(provider)
    messages = request.messages
    if any(key in m for m in messages for key in THINKING_KEYS):
        dropped = THINKING_KEYS if not sends_reasoning_back(provider) else {"reasoning_signature"}
        messages = [{k: v for k, v in m.items() if k not in dropped} for m in messages]
    body: dict[str, Any] = {"model": resolved.model, "messages": messages, "stream": stream}
    if stream and caps.include_usage:
        body["stream_options"] = {"include_usage": True}
    for name in ("temperature", "max_tokens", "stop", "seed", "tools"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("auto", "required", "none")
            else {"type": "function", "function": {"name": choice}}
        )
    if request.json_schema is not None:
        schema = request.json_schema
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": schema if "schema" in schema else {"name": "reply", "schema": schema},
        }
    elif request.json_mode:
        body["response_format"] = {"type": "json_object"}
    if request.effort is not None:
        body.update(effort_fields(style, request.effort))
    return provider_request(provider, body, url=resolved.wire_url, shown_url=resolved.chat_url, stream=stream)


def read_stream(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    """The stream's events as its bytes arrive (see `read_events`), each read taken by `_take`."""
    return read_events(response, resolved, state, _take)


def _take(events: list[ServerSentEvent], resolved: Resolved, state: ReplyState) -> tuple[str, str]:
    """Apply the events of one read to `state`; return their thinking and their text. What came
    before a bad event is kept in `state` (and shown by the caller's error) before the error is
    raised."""
    pieces: list[str] = []
    thoughts: list[str] = []
    data = ""
    try:
        for event in events:
            state.events += 1
            data = event.data
            if data == "[DONE]" or (data[:1] != "{" and data.strip() == "[DONE]"):
                state.saw_done = True
                break
            payload = json.loads(data)  # not _parse_chunk: this runs once per token
            if event.event == "error" or "error" in payload:
                raise stream_error(payload, resolved, state)
            _apply_chunk(payload, state, pieces, thoughts)
    except SHAPE_ERRORS as exc:
        _keep(state, pieces, thoughts)
        if isinstance(exc, (json.JSONDecodeError, RecursionError)):
            what = f"sent a chunk that is not JSON: {clip(data, 120)!r}"
            raise protocol_error(resolved, state, what, not_json=True) from None
        raise protocol_error(resolved, state, f"sent a chunk nbllm cannot read ({exc})") from exc
    except StreamError:
        _keep(state, pieces, thoughts)
        raise
    thinking = "".join(thoughts) if thoughts else ""
    if thinking:
        state.thought(thinking, time.perf_counter())
    if not pieces:
        return thinking, ""
    text = pieces[0] if len(pieces) == 1 else "".join(pieces)
    state.pieces.append(text)
    return thinking, text


def _keep(state: ReplyState, pieces: list[str], thoughts: list[str]) -> None:
    state.pieces.extend(pieces)
    if thoughts:
        state.thought("".join(thoughts), time.perf_counter())


async def read_whole(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    text = (await response.aread()).decode("utf-8", errors="replace")
    payload = json_object(text, resolved, state, "chunk")
    if "error" in payload:
        raise stream_error(payload, resolved, state)
    try:
        choices = payload.get("choices") or [{}]
        message = choices[0].get("message") or {}
        finish = choices[0].get("finish_reason")
        for delta in message.get("tool_calls") or []:
            state.tools.add(delta)
        reasoning = _reasoning_of(message)
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError(f"message.content is {type(content).__name__}, not a string")
    except SHAPE_ERRORS as exc:
        raise protocol_error(resolved, state, f"sent a reply nbllm cannot read ({exc})") from exc
    state.finish_reason = str(finish) if finish else None
    _apply_usage(payload.get("usage"), state)
    tags = state.think_tags or ThinkTags()
    state.think_tags = None
    tagged, content = tags.feed(content)
    held_thinking, held_text = tags.close()
    reasoning += tagged + held_thinking
    content += held_text
    for event in whole_events(state, reasoning, content):
        yield event


def _reasoning_of(part: dict[str, Any]) -> str:
    """The thinking in a stream's delta or a whole reply's message, in any of the servers'
    shapes: ``reasoning_content`` (DeepSeek, llama.cpp, LM Studio, older vLLM), ``reasoning``
    (vLLM, Ollama, OpenRouter), or only OpenRouter's ``reasoning_details`` list. OpenRouter sends
    the same text as ``reasoning`` and in the details, so the details are read only alone."""
    reasoning = part.get("reasoning_content") or part.get("reasoning")
    if reasoning:
        if reasoning.__class__ is not str:
            raise TypeError(f"reasoning is {type(reasoning).__name__}, not a string")
        return str(reasoning)
    details = part.get("reasoning_details")
    if not details:
        return ""
    texts = []
    for detail in details:
        kind = detail.get("type")
        # reasoning.encrypted holds no readable text; it matters only to the upstream model.
        text = detail.get("text") if kind == "reasoning.text" else detail.get("summary")
        if kind in ("reasoning.text", "reasoning.summary") and text:
            if not isinstance(text, str):
                raise TypeError(f"a reasoning detail's text is {type(text).__name__}, not a string")
            texts.append(text)
    return "".join(texts)


def _apply_chunk(payload: dict[str, Any], state: ReplyState, pieces: list[str], thoughts: list[str]) -> None:
    """Take one chunk's usage, text, thinking, tool-call deltas and finish reason; its text
    goes to `pieces` and its thinking to `thoughts` (the caller's batches for this read). A
    field of the wrong type raises one of `SHAPE_ERRORS`."""
    if "usage" in payload:
        _apply_usage(payload["usage"], state)
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        if "reasoning_content" in delta or "reasoning" in delta or "reasoning_details" in delta:
            thinking = _reasoning_of(delta)
            if thinking:
                thoughts.append(thinking)
        content = delta.get("content")
        if content:
            if content.__class__ is not str:
                raise TypeError(f"delta.content is {type(content).__name__}, not a string")
            if state.think_tags is not None:
                tagged, content = state.think_tags.feed(content)
                if tagged:
                    thoughts.append(tagged)
                if state.think_tags.done:
                    state.think_tags = None
            if content:
                if state.first_answer_at is None:
                    state.answered(time.perf_counter())
                pieces.append(content)
        tool_deltas = delta.get("tool_calls")
        if tool_deltas:
            if state.first_answer_at is None:
                state.answered(time.perf_counter())
            for tool_delta in tool_deltas:
                state.tools.add(tool_delta)
        finish = choice.get("finish_reason")
        if finish:
            state.finish_reason = str(finish)


def _apply_usage(usage: Any, state: ReplyState) -> None:
    """Take the server's token counts, when they are counts. Anything else (NaN, 1e999, a
    string, a negative number) is ignored: nbllm's own estimate stands, marked as one."""
    if not isinstance(usage, dict):
        return
    prompt, completion = _count(usage.get("prompt_tokens") or 0), _count(usage.get("completion_tokens"))
    if prompt is not None and completion is not None:
        state.usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
    state.report_cost(usage.get("cost"))  # OpenRouter's, in dollars (credits)
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict):
        thinking = _count(details.get("reasoning_tokens"))
        if thinking:  # 0 from a server that counts none is no count of thinking
            state.reasoning_tokens = thinking


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_TOKEN_COUNT:
        return int(value)
    return None
