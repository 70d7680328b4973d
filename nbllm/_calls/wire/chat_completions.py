"""OpenAI Chat Completions (``POST .../chat/completions``): the request body, and the reply,
streamed as server-sent events or whole, read into a `ReplyState`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from nbllm._calls.errors import UPSTREAM_TEXT_LIMIT, upstream_message
from nbllm._calls.reply import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import TokenEvent, Usage
from nbllm._calls.sse import SSEDecoder
from nbllm._constants import VERSION
from nbllm._exceptions import (
    StreamError,
)
from nbllm._providers.auth import auth_headers
from nbllm._providers.config import expand_vars
from nbllm._providers.resolved import Resolved


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and JSON body a call will send."""
    provider, caps = resolved.provider, resolved.spec.capabilities
    stream = caps.streaming if request.stream is None else request.stream
    body: dict[str, Any] = {"model": resolved.model, "messages": request.messages, "stream": stream}
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
    body.update(provider.extra_body)
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": f"nbllm/{VERSION}",
    }
    for name, template in provider.header_templates().items():
        headers[name] = expand_vars(template, f"header {name}")
    credentials = auth_headers(provider)  # one key lookup per attempt (a keyring read can be slow)
    headers.update(credentials)
    secrets = set(credentials.values()) | {headers[name] for name in provider.unsaved_headers()}
    return PreparedRequest(resolved.chat_url, headers, body, secrets)


async def read_stream(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent]:
    """Decode the stream as its bytes arrive. The text of every event in one network read goes
    out as one `TokenEvent` (a consumer's per-event cost is then paid per read, not per token),
    and nothing waits between reads: how often the screen changes is the renderer's business."""
    decoder = SSEDecoder()
    async for chunk in response.aiter_bytes():
        pieces: list[str] = []
        failure: StreamError | None = None
        for event in decoder.feed(chunk):
            state.events += 1
            data = event.data
            if data == "[DONE]" or (data[:1] != "{" and data.strip() == "[DONE]"):
                state.saw_done = True
                continue
            try:
                payload = _parse_chunk(data, resolved, state)
            except StreamError as error:
                failure = error
                break
            if event.event == "error" or "error" in payload:
                failure = _stream_error(payload, resolved, state)
                break
            _apply_chunk(payload, state, pieces)
        if pieces:  # text that arrived before a bad event is still shown
            text = pieces[0] if len(pieces) == 1 else "".join(pieces)
            state.pieces.append(text)
            yield TokenEvent(text)
        if failure is not None:
            raise failure
    decoder.close()


async def read_whole(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent]:
    text = (await response.aread()).decode("utf-8", errors="replace")
    payload = _parse_chunk(text, resolved, state)
    if "error" in payload:
        raise _stream_error(payload, resolved, state)
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {}
    state.finish_reason = choices[0].get("finish_reason")
    for delta in message.get("tool_calls") or []:
        state.tools.add(delta)
    state.reasoning = str(message.get("reasoning_content") or message.get("reasoning") or "")
    _apply_usage(payload, state)
    content = message.get("content") or ""
    if content:
        state.pieces.append(content)
        state.first_token_at = time.perf_counter()
        yield TokenEvent(content)


def _parse_chunk(data: str, resolved: Resolved, state: ReplyState) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError:
        raise StreamError(
            f"{resolved.qualified_name} sent a chunk that is not JSON: {data[:120]!r}",
            hint="the server is not speaking the OpenAI streaming format; check the URL, or try --no-stream",
            request_id=state.request_id,
        ) from None
    if not isinstance(payload, dict):
        raise StreamError(f"{resolved.qualified_name} sent a chunk that is not a JSON object")
    return payload


def _apply_chunk(payload: dict[str, Any], state: ReplyState, pieces: list[str]) -> None:
    """Take one chunk's usage, text, reasoning, tool-call deltas and finish reason; its text
    goes to `pieces` (the caller's batch for this read)."""
    if "usage" in payload:
        _apply_usage(payload, state)
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            if state.first_token_at is None:
                state.first_token_at = time.perf_counter()
            pieces.append(content)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            state.reasoning += str(reasoning)
        tool_deltas = delta.get("tool_calls")
        if tool_deltas:
            if state.first_token_at is None:
                state.first_token_at = time.perf_counter()
            for tool_delta in tool_deltas:
                state.tools.add(tool_delta)
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]


def _apply_usage(payload: dict[str, Any], state: ReplyState) -> None:
    usage = payload.get("usage")
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        state.usage = Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )


def _stream_error(payload: dict[str, Any], resolved: Resolved, state: ReplyState) -> StreamError:
    upstream = upstream_message(payload) or json.dumps(payload)[:UPSTREAM_TEXT_LIMIT]
    model = resolved.qualified_name
    return StreamError(
        f"{model} reported an error mid-stream: {upstream}",
        hint="if it concerns tools, JSON mode or usage reporting, turn that capability off: "
        f"%llm_provider model {resolved.provider.name} set {resolved.model} --caps no-include_usage",
        upstream_message=upstream,
        request_id=state.request_id,
        body=payload,
    )
