"""Anthropic Messages (``POST …/v1/messages``), as Anthropic, Anthropic-compatible gateways
(LiteLLM, AWS Bedrock behind a proxy) and llama.cpp's ``llama-server`` speak it: the request
body from nbllm's OpenAI-shaped messages, and the reply, streamed as named server-sent events
or whole, read into the same `ReplyState` as Chat Completions.

Mapping: system messages become the top-level ``system``; ``max_tokens`` is always sent (the
API requires it); images become ``image`` blocks; tools ``{name, description, input_schema}``;
``tool_choice`` auto/required/none/NAME becomes auto/any/none/tool; an assistant's tool calls
``tool_use`` blocks, tool results ``tool_result`` blocks in one user message; ``--effort`` the
``thinking`` object with a token budget; JSON mode an instruction in the system prompt (the
API has no response format). A turn's signed thinking goes back before its tool calls, as the
API requires in tool loops. ``seed`` is not part of the API and is not sent.
"""

from __future__ import annotations

import json
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
from nbllm._constants import ANTHROPIC_MAX_TOKENS, ANTHROPIC_THINKING_BUDGETS
from nbllm._exceptions import PromptError
from nbllm._providers.resolved import Resolved

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic's stop reasons in OpenAI's words, which the rest of nbllm reads."""

JSON_INSTRUCTION = "Reply with one JSON value and nothing else: no prose, no Markdown code fence."


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and JSON body a call will send."""
    provider, caps = resolved.provider, resolved.spec.capabilities
    stream = caps.streaming if request.stream is None else request.stream
    system, messages = _messages(request.messages)
    if request.json_schema is not None or request.json_mode:
        schema = request.json_schema
        instruction = JSON_INSTRUCTION
        if schema is not None:
            instruction += " It must match this JSON schema: " + json.dumps(schema.get("schema", schema))
        system = f"{system}\n\n{instruction}" if system else instruction
    max_tokens = request.max_tokens or ANTHROPIC_MAX_TOKENS
    body: dict[str, Any] = {"model": resolved.model, "max_tokens": max_tokens, "messages": messages}
    if stream:
        body["stream"] = True
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.tools:
        body["tools"] = [_tool(schema) for schema in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.effort is not None:
        body.update(_thinking(request.effort, request.max_tokens))
    return provider_request(provider, body, url=resolved.wire_url, shown_url=resolved.chat_url, stream=stream)


def _thinking(effort: str, max_tokens: int | None) -> dict[str, Any]:
    """``thinking`` for `effort`. Its budget must be at least 1,024 and below ``max_tokens``:
    without --max-tokens the limit grows to make room for the answer too."""
    if effort == "none":
        return {"thinking": {"type": "disabled"}}
    budget = ANTHROPIC_THINKING_BUDGETS[effort]
    if max_tokens is None:
        return {
            "thinking": {"type": "enabled", "budget_tokens": budget},
            "max_tokens": budget + ANTHROPIC_MAX_TOKENS,
        }
    minimum = min(ANTHROPIC_THINKING_BUDGETS.values())
    if max_tokens <= minimum:
        raise PromptError(
            f"--effort {effort} needs --max-tokens above {minimum:,} on an Anthropic-compatible endpoint "
            f"(the thinking budget is at least {minimum:,} tokens, and below the limit)",
            hint="raise --max-tokens, or leave it out to let nbllm make room",
        )
    return {"thinking": {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}}


def _tool(schema: dict[str, Any]) -> dict[str, Any]:
    function = schema.get("function", schema)
    tool = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system, messages) in the Messages API's shape."""
    system: list[str] = []
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content")))
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _text_of(message.get("content")),
            }
            last = converted[-1] if converted else None
            if last and last["role"] == "user" and isinstance(last["content"], list) and _all_results(last):
                last["content"].append(result)  # one user turn holds all of a round's results
            else:
                converted.append({"role": "user", "content": [result]})
        elif role == "assistant":
            converted.append({"role": "assistant", "content": _assistant_content(message)})
        else:
            converted.append({"role": "user", "content": _user_content(message.get("content"))})
    return "\n\n".join(s for s in system if s), converted


def _all_results(message: dict[str, Any]) -> bool:
    return all(block.get("type") == "tool_result" for block in message["content"])


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _user_content(content: Any) -> Any:
    if not isinstance(content, list):
        return "" if content is None else content
    blocks = []
    for part in content:
        if part.get("type") == "image_url":
            blocks.append(_image(str((part.get("image_url") or {}).get("url", ""))))
        else:
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
    return blocks


def _image(url: str) -> dict[str, Any]:
    """An image part (a ``data:`` URL, as nbllm sends a variable's image, or a web URL)."""
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[len("data:") :].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_content(message: dict[str, Any]) -> Any:
    blocks: list[dict[str, Any]] = []
    thinking, signature = message.get("reasoning_content"), message.get("reasoning_signature")
    if thinking and signature:  # unsigned thinking cannot go back: the API would refuse it
        blocks.append({"type": "thinking", "thinking": thinking, "signature": signature})
    text = _text_of(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}  # the model wrote bad JSON; its tool result already says so
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": arguments,
            }
        )
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return text
    return blocks or text


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
    """One event; True at ``message_stop``."""
    if kind == "content_block_delta":
        _delta(payload, state, pieces, thoughts)
    elif kind == "content_block_start":
        _block_start(payload, state, pieces, thoughts)
    elif kind == "message_start":
        message = payload.get("message") or {}
        state.request_id = state.request_id or message.get("id")
        _usage(message.get("usage"), state)
    elif kind == "message_delta":
        stop = (payload.get("delta") or {}).get("stop_reason")
        if stop:
            state.finish_reason = FINISH_REASONS.get(str(stop), str(stop))
        _usage(payload.get("usage"), state)
    elif kind == "message_stop":
        state.saw_done = True
        return True
    elif kind == "error":
        raise stream_error(payload, resolved, state)
    return False


_take = typed_take(_apply)


def _delta(payload: dict[str, Any], state: ReplyState, pieces: list[str], thoughts: list[str]) -> None:
    delta = payload["delta"]
    kind = delta.get("type")
    if kind == "text_delta":
        text = delta["text"]
        if text.__class__ is not str:
            raise TypeError(f"text_delta.text is {type(text).__name__}, not a string")
        if text:
            if state.first_answer_at is None:
                state.answered(time.perf_counter())
            pieces.append(text)
    elif kind == "thinking_delta":
        thoughts.append(str(delta["thinking"]))
    elif kind == "signature_delta":
        state.signature += str(delta["signature"])
    elif kind == "input_json_delta":
        state.tools.add(
            {"index": int(payload["index"]), "function": {"arguments": str(delta["partial_json"])}}
        )


def _block_start(payload: dict[str, Any], state: ReplyState, pieces: list[str], thoughts: list[str]) -> None:
    block = payload["content_block"]
    kind = block.get("type")
    if kind == "tool_use":
        state.answered(time.perf_counter())
        call: dict[str, Any] = {
            "index": int(payload["index"]),
            "id": block["id"],
            "function": {"name": block["name"]},
        }
        if block.get("input"):  # a whole input up front (some gateways); otherwise deltas follow
            call["function"]["arguments"] = block["input"]
        state.tools.add(call)
    elif kind == "text" and block.get("text"):
        state.answered(time.perf_counter())
        pieces.append(str(block["text"]))
    elif kind == "thinking" and block.get("thinking"):
        thoughts.append(str(block["thinking"]))


def _usage(usage: Any, state: ReplyState) -> None:
    """Anthropic counts input at the start and output (cumulatively) at the end."""
    if not isinstance(usage, dict):
        return
    current = state.usage or Usage()
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt >= 0:
        current = Usage(prompt, current.completion_tokens)
    if isinstance(completion, int) and not isinstance(completion, bool) and completion >= 0:
        current = Usage(current.prompt_tokens, completion)
    state.usage = current


async def read_whole(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    text = (await response.aread()).decode("utf-8", errors="replace")
    payload = json_object(text, resolved, state, "reply")
    if payload.get("type") == "error":
        raise stream_error(payload, resolved, state)
    pieces: list[str] = []
    thoughts: list[str] = []
    try:
        for index, block in enumerate(payload.get("content") or []):
            kind = block.get("type")
            if kind == "text":
                pieces.append(str(block.get("text", "")))
            elif kind == "thinking":
                thoughts.append(str(block.get("thinking", "")))
                state.signature += str(block.get("signature", ""))
            elif kind == "tool_use":
                arguments = json.dumps(block.get("input") or {})
                state.tools.add(
                    {
                        "index": index,
                        "id": block.get("id"),
                        "function": {"name": block.get("name"), "arguments": arguments},
                    }
                )
        stop = payload.get("stop_reason")
    except SHAPE_ERRORS as exc:
        raise protocol_error(resolved, state, f"sent a reply nbllm cannot read ({exc})") from exc
    state.finish_reason = FINISH_REASONS.get(str(stop), str(stop)) if stop else None
    _usage(payload.get("usage"), state)
    for event in whole_events(state, "".join(thoughts), "".join(pieces)):
        yield event
