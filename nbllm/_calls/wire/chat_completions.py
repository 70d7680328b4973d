"""OpenAI Chat Completions (``POST .../chat/completions``): the request body, and the reply,
streamed as server-sent events or whole, read into a `ReplyState`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from nbllm._calls.errors import SHAPE_ERRORS, UPSTREAM_TEXT_LIMIT, clip, protocol_error, upstream_message
from nbllm._calls.reply import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent, Usage
from nbllm._calls.sse import ServerSentEvent, SSEDecoder
from nbllm._calls.wire.reasoning import effort_fields, sends_reasoning_back, style_for
from nbllm._calls.wire.think_tags import ThinkTags
from nbllm._constants import AFTER_FINISH_GRACE_S, VERSION
from nbllm._exceptions import ConfigError, StreamError
from nbllm._providers.auth import auth_headers
from nbllm._providers.config import expand_vars
from nbllm._providers.resolved import Resolved

_timeout = getattr(asyncio, "timeout", None)

MAX_TOKEN_COUNT = 10**9
"""Token counts above this are not counts (a server once sent 1e999)."""


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and JSON body a call will send."""
    provider, caps = resolved.provider, resolved.spec.capabilities
    stream = caps.streaming if request.stream is None else request.stream
    style = style_for(provider)
    messages = request.messages
    if not sends_reasoning_back(style) and any("reasoning_content" in m for m in messages):
        messages = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in messages]
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
    body.update(provider.extra_body)
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": f"nbllm/{VERSION}",
    }
    for name, template in provider.header_templates().items():
        value = expand_vars(template, f"header {name}")
        if not value.isascii():  # from a ${VAR}; the value is not echoed, it may be a token
            raise ConfigError(
                f"header {name} expands to non-ASCII characters, which HTTP headers cannot carry"
            )
        headers[name] = value
    credentials = auth_headers(provider)  # one key lookup per attempt (a keyring read can be slow)
    headers.update(credentials)
    secrets = set(credentials.values()) | {headers[name] for name in provider.unsaved_headers()}
    return PreparedRequest(resolved.chat_url, headers, body, secrets)


async def read_stream(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    """Decode the stream as its bytes arrive. The text of every event in one network read goes
    out as one `TokenEvent` (a consumer's per-event cost is then paid per read, not per token),
    its thinking as one `ReasoningEvent` before it, and nothing waits between reads: how often
    the screen changes is the renderer's business.

    The reply is complete at ``[DONE]``: nothing after it is interpreted. After the finish
    reason, the rest (the usage chunk, ``[DONE]``, the body's end) may take at most
    `AFTER_FINISH_GRACE_S` in all; a server that then stalls or drops the connection has
    still given a whole reply."""
    decoder = SSEDecoder()
    chunks = response.aiter_bytes()
    async for chunk in chunks:
        thinking, text = _take(decoder.feed(chunk), resolved, state)
        if thinking:
            yield ReasoningEvent(thinking)
        if text:
            yield TokenEvent(text)
        if state.complete:
            break
    else:
        decoder.close()
        for event in _held_tags(state):
            yield event
        return
    tail: list[str] = []  # text after the finish reason (rare), kept even if the tail times out
    with contextlib.suppress(asyncio.TimeoutError, httpx.TransportError, httpx.DecodingError):
        # One deadline for the whole tail. asyncio.timeout (3.11) costs a timer; wait_for, the
        # 3.10 fallback, a task, which shows in the time of small calls.
        reading = _read_tail(chunks, decoder, resolved, state, tail)
        if _timeout is None:
            await asyncio.wait_for(reading, AFTER_FINISH_GRACE_S)
        else:
            async with _timeout(AFTER_FINISH_GRACE_S):
                await reading
    if tail:
        yield TokenEvent("".join(tail))
    for event in _held_tags(state):
        yield event


def _held_tags(state: ReplyState) -> list[TokenEvent | ReasoningEvent]:
    """At the reply's end: what the ``<think>`` splitter still held (an unclosed thought, or a
    reply that was only the start of a tag)."""
    if state.think_tags is None:
        return []
    thinking, text = state.think_tags.close()
    state.think_tags = None
    events: list[TokenEvent | ReasoningEvent] = []
    now = time.perf_counter()
    if thinking:
        state.thought(thinking, now)
        events.append(ReasoningEvent(thinking))
    if text:
        state.answered(now)
        state.pieces.append(text)
        events.append(TokenEvent(text))
    return events


async def _read_tail(
    chunks: AsyncIterator[bytes], decoder: SSEDecoder, resolved: Resolved, state: ReplyState, tail: list[str]
) -> None:
    """After the finish reason: the usage chunk and ``[DONE]``, then the body's end (usually in
    hand already), read so the connection can be reused."""
    async for chunk in chunks:
        if not state.saw_done:
            _, text = _take(decoder.feed(chunk), resolved, state)
            if text:
                tail.append(text)


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
                raise _stream_error(payload, resolved, state)
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
    payload = _parse_chunk(text, resolved, state)
    if "error" in payload:
        raise _stream_error(payload, resolved, state)
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
    if reasoning:  # not timed: a whole reply says nothing of how long the model thought
        state.thoughts.append(reasoning)
        yield ReasoningEvent(reasoning)
    if content or state.tools.calls():
        state.answered(time.perf_counter())
    if content:
        state.pieces.append(content)
        yield TokenEvent(content)


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


def _parse_chunk(data: str, resolved: Resolved, state: ReplyState) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        raise protocol_error(
            resolved, state, f"sent a chunk that is not JSON: {clip(data, 120)!r}", not_json=True
        ) from None
    if not isinstance(payload, dict):
        raise protocol_error(resolved, state, f"sent a chunk that is not a JSON object: {clip(data, 120)!r}")
    return payload


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


def _stream_error(payload: dict[str, Any], resolved: Resolved, state: ReplyState) -> StreamError:
    upstream = clip(upstream_message(payload) or json.dumps(payload), UPSTREAM_TEXT_LIMIT)
    model = resolved.qualified_name
    return StreamError(
        f"{model} reported an error mid-stream: {upstream}",
        hint="if it concerns tools, JSON mode or usage reporting, turn that capability off: "
        f"%llm_provider model {resolved.provider.name} set {resolved.model} --caps no-include_usage",
        upstream_message=upstream,
        request_id=state.request_id,
        body=payload,
    )
