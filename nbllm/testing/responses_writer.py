"""OpenAI's Responses API as the loopback server speaks it at ``/v1/responses``: the scripted
reply as output items (a reasoning summary, a message, function calls), streamed as typed
events or whole."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbllm.testing.server import Fault, _Handler, _Script


def send_responses(handler: _Handler, chat: dict[str, Any], fault: Fault | None) -> None:
    """The scripted reply as a Responses API object, or its typed events when streamed."""
    script = handler._script(chat)
    usage = handler._usage(chat, len(script.deltas), script.thinking_tokens)
    items = _response_items(script)
    incomplete = script.finish == "length"
    response = {
        "id": f"resp_nbllm_{len(handler.state.requests)}",
        "object": "response",
        "model": chat.get("model", ""),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": [{k: v for k, v in item.items() if k != "pieces"} for item in items],
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": script.thinking_tokens},
        },
    }
    if not chat.get("stream"):
        handler._send_json(200, response)
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    pause = 1.0 / handler.state.tokens_per_s if handler.state.tokens_per_s else 0.0

    def event(name: str, payload: dict[str, Any]) -> None:
        data = f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()
        handler._write(b"%x\r\n%s\r\n" % (len(data), data))

    event("response.created", {"response": {**response, "status": "in_progress", "output": []}})
    for index, item in enumerate(items):
        opening = {k: v for k, v in item.items() if k != "pieces"}
        if item["type"] == "function_call":
            opening["arguments"] = ""
        event("response.output_item.added", {"output_index": index, "item": opening})
        delta_event = {
            "reasoning": "response.reasoning_summary_text.delta",
            "message": "response.output_text.delta",
            "function_call": "response.function_call_arguments.delta",
        }[item["type"]]
        for piece in item["pieces"]:
            if fault and fault.kind == "error_event":
                event("error", {"code": "server_error", "message": fault.message})
                handler._write(b"0\r\n\r\n")
                return
            event(delta_event, {"output_index": index, "item_id": item["id"], "delta": piece})
            if pause:
                handler._wait(pause)
        event("response.output_item.done", {"output_index": index, "item": opening})
    if not (fault and fault.kind == "no_done"):
        event("response.incomplete" if incomplete else "response.completed", {"response": response})
    handler._write(b"0\r\n\r\n")


def responses_as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses request as the scripted model reads requests (OpenAI chat messages)."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"] if isinstance(body["input"], list) else [{"role": "user", "content": body["input"]}]
    for item in items:
        if item.get("type") == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
            )
        elif item.get("type") == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        else:
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            messages.append({"role": item.get("role", "user"), "content": content})
    return {
        "model": body.get("model"),
        "messages": messages,
        "tools": body.get("tools"),
        "max_tokens": body.get("max_output_tokens"),
        "stream": body.get("stream"),
    }


def _response_items(script: _Script) -> list[dict[str, Any]]:
    """The script's deltas as Responses output items, each with the pieces it streams in."""
    items: list[dict[str, Any]] = []
    for delta in script.deltas:
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought is None and delta.get("reasoning_details"):
            thought = delta["reasoning_details"][0].get("summary") or ""
        if thought is not None:
            if not items or items[-1]["type"] != "reasoning":
                items.append(
                    {
                        "type": "reasoning",
                        "id": f"rs_{len(items)}",
                        "summary": [{"type": "summary_text", "text": ""}],
                        "pieces": [],
                    }
                )
            items[-1]["summary"][0]["text"] += thought
            items[-1]["pieces"].append(thought)
        elif "content" in delta:
            if not items or items[-1]["type"] != "message":
                items.append(
                    {
                        "type": "message",
                        "id": f"msg_{len(items)}",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": ""}],
                        "pieces": [],
                    }
                )
            items[-1]["content"][0]["text"] += delta["content"]
            items[-1]["pieces"].append(delta["content"])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if function.get("name"):
                items.append(
                    {
                        "type": "function_call",
                        "id": f"fc_{len(items)}",
                        "call_id": f"call_{call['index']}",
                        "name": function["name"],
                        "arguments": "",
                        "pieces": [],
                    }
                )
            elif function.get("arguments"):
                items[-1]["arguments"] += function["arguments"]
                items[-1]["pieces"].append(function["arguments"])
    return items
