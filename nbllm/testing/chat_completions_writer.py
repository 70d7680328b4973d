"""OpenAI's Chat Completions as the loopback server speaks it: the scripted reply streamed as
server-sent events (framed as the server is set to, with the stream faults acted out) or
whole, as one JSON object."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbllm.testing.server import Fault, _Handler, _Script


def send_chat_completion(handler: _Handler, body: dict[str, Any], fault: Fault | None) -> None:
    """The scripted reply to a Chat Completions request, streamed when it asks to be."""
    if body.get("stream"):
        _stream(handler, body, fault)
    else:
        _whole(handler, body, fault)


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-nbllm-testing",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _stream(handler: _Handler, body: dict[str, Any], fault: Fault | None) -> None:
    kind = fault.kind if fault else None
    script = handler._script(body)
    end = b"\r\n" if kind == "crlf" else b"\n"
    framing = handler.state.framing
    chunked = framing != "body"
    # A byte_writes fault splits into single bytes; the "bytes" framing into 1-3 byte chunks.
    piece_sizes = (1,) if kind == "byte_writes" else (1, 2, 3) if framing == "bytes" else ()

    def send(data: bytes) -> None:
        if not piece_sizes:
            handler._write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            return
        start, turn = 0, 0
        while start < len(data):
            piece = data[start : start + piece_sizes[turn % len(piece_sizes)]]
            handler._write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            start, turn = start + len(piece), turn + 1

    def event(payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        send(b"data: " + text.encode() + end + end)

    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.send_header("x-request-id", f"req-{len(handler.state.requests)}")
    handler.end_headers()
    if _stream_events(handler, body, fault, script, event, end, send) and chunked:
        handler._write(b"0\r\n\r\n")  # the end of the body; the connection stays open


def _stream_events(
    handler: _Handler,
    body: dict[str, Any],
    fault: Fault | None,
    script: _Script,
    event: Callable[[Any], None],
    end: bytes,
    send: Callable[[bytes], None],
) -> bool:
    """Write the events; False when the connection was reset instead."""
    kind = fault.kind if fault else None
    send(b": nbllm-testing" + end)
    pause = 1.0 / handler.state.tokens_per_s if handler.state.tokens_per_s else 0.0
    for index, delta in enumerate(script.deltas):
        if fault and index == fault.after_chunks:
            if kind == "reset":
                handler._reset()
                return False
            if kind == "stall":
                handler._wait(fault.seconds)
            if kind == "malformed":
                event('{"choices": [{"delta": {"content": "unterminated')
            if kind == "error_event":
                event({"error": {"message": fault.message, "type": "server_error"}})
                return True
        if handler.state.stamp_tokens and "content" in delta:
            delta = {**delta, "content": f"{time.monotonic()!r} "}
        if index == 0:
            delta = {"role": "assistant", **delta}
        event(_chunk(body, delta))
        if pause:
            handler._wait(pause)
    if kind == "reset":  # after_chunks beyond the reply: reset at the end
        handler._reset()
        return False
    if kind == "no_done":
        return True
    event(_chunk(body, {}, script.finish))
    include_usage = (body.get("stream_options") or {}).get("include_usage")
    if handler.state.usage and include_usage:
        usage = handler._usage(body, len(script.deltas), script.thinking_tokens)
        event({**_chunk(body, {}), "choices": [], "usage": usage})
    if kind != "finish_no_done":
        event("[DONE]")
    return True


def _whole(handler: _Handler, body: dict[str, Any], fault: Fault | None) -> None:
    if handler.whole_reply_fault(fault, b'{"choices": [ not json'):
        return
    script = handler._script(body)
    message = _message(handler, script)
    payload: dict[str, Any] = {
        "id": "chatcmpl-nbllm-testing",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": script.finish,
            }
        ],
    }
    if handler.state.usage:
        payload["usage"] = handler._usage(body, len(script.deltas), script.thinking_tokens)
    handler._send_json(200, payload)


def _message(handler: _Handler, script: _Script) -> dict[str, Any]:
    """A whole reply's message: the stream's deltas joined, thinking in its shape's field."""
    content = "".join(d.get("content", "") for d in script.deltas)
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    thought = script.deltas[: script.thinking_tokens]
    thinking = "".join(d.get("reasoning_content") or d.get("reasoning") or "" for d in thought)
    shape = handler.state.reasoning_shape
    if thinking and shape in ("reasoning_content", "reasoning"):
        message[shape] = thinking
    elif thinking and shape == "openrouter":
        message["reasoning"] = thinking
        message["reasoning_details"] = [{"type": "reasoning.text", "text": thinking, "index": 0}]
    elif shape == "details" and script.thinking_tokens:
        details = [d["reasoning_details"][0] for d in thought]
        summary = "".join(d.get("summary", "") for d in details)
        message["reasoning_details"] = [{"type": "reasoning.summary", "summary": summary}] + [
            d for d in details if d["type"] == "reasoning.encrypted"
        ]
    if isinstance(script.answer, list):
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                },
            }
            for i, c in enumerate(script.answer)
        ]
    return message
