"""OpenAI's Responses API (``--api responses``) and ``--api auto``: the request mapping, the
reply in the documented event shapes (text, reasoning summary, function calls, incomplete,
failure), the loopback server speaking it with a tool loop, and auto's fallback to Chat
Completions, learned once per session."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from IPython.utils.capture import capture_output

import nbllm
from nbllm import ProviderConfig, get_store
from nbllm._calls.protocol_choice import prepare
from nbllm._calls.request import ChatRequest
from nbllm._providers.urls import chat_url, responses_url
from nbllm.testing import ScriptedToolCall, serve

URL = "http://responses.test/v1"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def register(url: str = URL, api: str = "responses", name: str = "r") -> str:
    models = {"m": {"context_window": 100_000, "capabilities": ["tools", "json", "reasoning"]}}
    get_store().add_provider(ProviderConfig(name=name, url=url, api=api, models=models), replace=True)
    return f"{name}/m"


def test_urls() -> None:
    assert responses_url("http://h/v1") == "http://h/v1/responses"
    assert responses_url("http://h/v1/chat/completions") == "http://h/v1/responses"
    assert responses_url("http://h/v1/responses") == "http://h/v1/responses"
    assert chat_url("http://h/v1", "m", api="responses") == "http://h/v1/responses"


def test_request_mapping() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    request = ChatRequest(
        messages,
        max_tokens=50,
        tools=[TOOL],
        tool_choice="get_weather",
        effort="high",
        json_mode=True,
        stop=["x"],
        seed=1,
    )
    body = prepare(get_store().resolve(register()), request).body
    assert body["instructions"] == "Be brief." and body["store"] is False and body["max_output_tokens"] == 50
    assert body["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {}},
            "description": "Weather.",
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["text"] == {"format": {"type": "json_object"}}
    assert "stop" not in body and "seed" not in body
    tiny = prepare(
        get_store().resolve(register()), ChatRequest([{"role": "user", "content": "x"}], max_tokens=1)
    )
    assert tiny.body["max_output_tokens"] == 16  # OpenAI's minimum: the endpoint check asks for 1


def events(*items: tuple[str, dict[str, Any]]) -> bytes:
    return "".join(
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n" for name, data in items
    ).encode()


@respx.mock
async def test_a_documented_stream() -> None:
    body = events(
        ("response.created", {"response": {"id": "resp_1", "status": "in_progress"}}),
        (
            "response.output_item.added",
            {"output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": []}},
        ),
        (
            "response.reasoning_summary_text.delta",
            {"output_index": 0, "item_id": "rs_1", "summary_index": 0, "delta": "Check "},
        ),
        (
            "response.reasoning_summary_text.delta",
            {"output_index": 0, "item_id": "rs_1", "summary_index": 0, "delta": "the weather."},
        ),
        (
            "response.output_item.added",
            {
                "output_index": 1,
                "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []},
            },
        ),
        (
            "response.output_text.delta",
            {"output_index": 1, "item_id": "msg_1", "content_index": 0, "delta": "Looking."},
        ),
        (
            "response.output_item.added",
            {
                "output_index": 2,
                "item": {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_9",
                    "name": "get_weather",
                    "arguments": "",
                },
            },
        ),
        (
            "response.function_call_arguments.delta",
            {"output_index": 2, "item_id": "fc_1", "delta": '{"city":'},
        ),
        (
            "response.function_call_arguments.delta",
            {"output_index": 2, "item_id": "fc_1", "delta": '"Paris"}'},
        ),
        (
            "response.function_call_arguments.done",
            {"output_index": 2, "item_id": "fc_1", "arguments": '{"city":"Paris"}'},
        ),
        (
            "response.completed",
            {
                "response": {
                    "id": "resp_1",
                    "status": "completed",
                    "usage": {
                        "input_tokens": 30,
                        "output_tokens": 40,
                        "output_tokens_details": {"reasoning_tokens": 12},
                    },
                }
            },
        ),
    )
    respx.post(f"{URL}/responses").mock(return_value=httpx.Response(200, content=body))
    got = [e async for e in nbllm.astream("Weather?", register(), tools=[TOOL])]
    result = got[-1].result  # type: ignore[union-attr]
    assert (result.reasoning, result.text, result.finish_reason) == (
        "Check the weather.",
        "Looking.",
        "tool_calls",
    )
    (call,) = result.tool_calls
    assert (call.id, call.parsed_arguments()) == ("call_9", {"city": "Paris"})
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.reasoning_tokens) == (
        30,
        40,
        12,
    )


@respx.mock
def test_incomplete_and_failed() -> None:
    incomplete = events(
        ("response.output_text.delta", {"output_index": 0, "delta": "Cut"}),
        (
            "response.incomplete",
            {"response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}},
        ),
    )
    failed = events(
        (
            "response.failed",
            {
                "response": {
                    "status": "failed",
                    "error": {"code": "server_error", "message": "The model broke."},
                }
            },
        )
    )
    respx.post(f"{URL}/responses").mock(
        side_effect=[httpx.Response(200, content=incomplete), httpx.Response(200, content=failed)]
    )
    model = register()
    assert nbllm.chat("x", model).finish_reason == "length"
    with pytest.raises(nbllm.StreamError, match=r"The model broke\."):
        nbllm.chat("x", model)


@pytest.mark.parametrize("stream", [True, False])
def test_loopback_reply_with_reasoning(stream: bool) -> None:
    with serve(reply="One two.", reasoning="Counting.") as server:
        result = nbllm.chat("count", register(server.base_url), stream=stream, effort="low")
    assert (result.text, result.reasoning, result.usage.reasoning_tokens) == ("One two.", "Counting.", 1)
    assert server.requests[-1].path == "/v1/responses"


def get_weather(city: str) -> str:
    """Weather in a city."""
    return f"Sunny in {city}."


def test_chat_tool_loop(ip: Any) -> None:
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "final"
    ip.user_ns["get_weather"] = get_weather
    calls = [ScriptedToolCall("get_weather", {"city": "Paris"})]
    try:
        with serve(tool_calls=calls, tool_reply="It is sunny.") as server:
            register(server.base_url)
            with capture_output() as shown:
                ip.run_cell_magic("chat", "r/m --tools get_weather --new", "Weather in Paris?")
    finally:
        magics.display_mode = "auto"
        ip.user_ns.pop("get_weather")
    second = server.requests[1].body["input"]
    assert second[1]["type"] == "function_call" and second[2] == {
        "type": "function_call_output",
        "call_id": "call_0",
        "output": "Sunny in Paris.",
    }
    assert "It is sunny." in shown.outputs[-1].data["text/markdown"]


def test_auto_falls_back_to_chat_completions_once_and_remembers() -> None:
    with serve(reply="From Chat Completions.", responses=False) as server:
        model = register(server.base_url, api="auto")
        first = nbllm.chat("hi", model)
        second = nbllm.chat("hi", model)
    assert first.text == second.text == "From Chat Completions."
    assert [r.path for r in server.requests] == [
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/chat/completions",
    ]
    assert first.retries == 1 and second.retries == 0
    assert nbllm.history()[-2].attempts[0].http_status == 404


def test_auto_uses_responses_where_they_are() -> None:
    with serve(reply="From Responses.") as server:
        assert nbllm.chat("hi", register(server.base_url, api="auto")).text == "From Responses."
    assert [r.path for r in server.requests] == ["/v1/responses"]


def test_responses_on_a_server_without_them_says_so() -> None:
    with serve(reply="x", responses=False) as server, pytest.raises(nbllm.NotFoundError) as caught:
        nbllm.chat("hi", register(server.base_url))
    assert "has no Responses API" in (caught.value.hint or "") and "--api auto" in (caught.value.hint or "")
