"""Anthropic's Messages API as the loopback server speaks it at ``/v1/messages``: the scripted
reply as content blocks (signed thinking, text, tool use), streamed as named events or whole."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbllm.testing.server import Fault, _Handler, _Script

ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def send_anthropic(handler: _Handler, body: dict[str, Any], fault: Fault | None) -> None:
    """The scripted reply in Anthropic's shapes: named events when streamed, else one
    message. Thinking (any shape but ``think_tags``) becomes signed thinking blocks."""
    chat = as_chat_request(body)
    script = handler._script(chat)
    blocks = _anthropic_blocks(script)
    usage = handler._usage(chat, len(script.deltas))
    stop = ANTHROPIC_STOP.get(script.finish, "end_turn")
    message = {
        "id": f"msg_nbllm_{len(handler.state.requests)}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": blocks,
        "stop_reason": stop,
        "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]},
    }
    if not body.get("stream"):
        if fault and fault.kind == "error_event":
            handler._send_json(
                529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            )
            return
        handler._send_json(200, {**message, "content": [_whole_block(b) for b in blocks]})
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("request-id", f"req-{len(handler.state.requests)}")
    handler.end_headers()
    pause = 1.0 / handler.state.tokens_per_s if handler.state.tokens_per_s else 0.0

    def event(name: str, payload: dict[str, Any]) -> None:
        data = f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()
        handler._write(b"%x\r\n%s\r\n" % (len(data), data))

    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    event("message_start", {"message": start})
    sent = 0
    for index, block in enumerate(blocks):
        kind = block["type"]
        opening = (
            {"type": kind, "id": block["id"], "name": block["name"], "input": {}}
            if kind == "tool_use"
            else {"type": kind, kind: ""}
        )
        event("content_block_start", {"index": index, "content_block": opening})
        for piece in block["pieces"]:
            if fault and sent == fault.after_chunks:
                if fault.kind == "error_event":
                    event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                    handler._write(b"0\r\n\r\n")
                    return
                if fault.kind == "reset":
                    handler._reset()
                    return
            delta_type = {
                "text": "text_delta",
                "thinking": "thinking_delta",
                "tool_use": "input_json_delta",
            }[kind]
            field = {"text": "text", "thinking": "thinking", "tool_use": "partial_json"}[kind]
            event("content_block_delta", {"index": index, "delta": {"type": delta_type, field: piece}})
            sent += 1
            if pause:
                handler._wait(pause)
        if kind == "thinking":
            event(
                "content_block_delta",
                {"index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}},
            )
        event("content_block_stop", {"index": index})
        event("ping", {})
    if not (fault and fault.kind == "no_done"):
        event(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": len(script.deltas)},
            },
        )
        event("message_stop", {})
    handler._write(b"0\r\n\r\n")


def as_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic request as the scripted model reads requests: OpenAI-shaped messages
    (tool results as ``tool`` messages), its tools and limit."""
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and content and all(b.get("type") == "tool_result" for b in content):
            messages += [
                {"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": b.get("content")}
                for b in content
            ]
        elif isinstance(content, list):
            text = "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
            messages.append({"role": message.get("role"), "content": text})
        else:
            messages.append({"role": message.get("role"), "content": content})
    return {"messages": messages, "tools": body.get("tools"), "max_tokens": body.get("max_tokens")}


def _whole_block(block: dict[str, Any]) -> dict[str, Any]:
    """A content block as a whole (non-streamed) reply holds it."""
    if block["type"] == "tool_use":
        arguments = json.loads(block["partial_json"] or "{}")
        return {"type": "tool_use", "id": block["id"], "name": block["name"], "input": arguments}
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]}
    return {"type": "text", "text": block["text"]}


def _anthropic_blocks(script: _Script) -> list[dict[str, Any]]:
    """The script's deltas as content blocks, each with the pieces it streams in."""
    blocks: list[dict[str, Any]] = []
    for delta in script.deltas:
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought is None and delta.get("reasoning_details"):
            thought = delta["reasoning_details"][0].get("summary") or ""
        if thought is not None:
            if not blocks or blocks[-1]["type"] != "thinking":
                blocks.append(
                    {"type": "thinking", "thinking": "", "signature": "sig-nbllm-testing", "pieces": []}
                )
            blocks[-1]["thinking"] += thought
            blocks[-1]["pieces"].append(thought)
        elif "content" in delta:
            if not blocks or blocks[-1]["type"] != "text":
                blocks.append({"type": "text", "text": "", "pieces": []})
            blocks[-1]["text"] += delta["content"]
            blocks[-1]["pieces"].append(delta["content"])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if function.get("name"):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": f"toolu_{call['index']}",
                        "name": function["name"],
                        "partial_json": "",
                        "pieces": [],
                    }
                )
            elif function.get("arguments"):
                blocks[-1]["partial_json"] += function["arguments"]
                blocks[-1]["pieces"].append(function["arguments"])
    return blocks
