"""Anthropic Messages (``--api anthropic``): URLs and headers, the request mapping, the reply
in the shapes Anthropic's docs show (streamed and whole, text, thinking with its signature,
tool use, errors), and the loopback server speaking it: `%%chat` with tools, a fallback that
crosses protocols, the dry run."""

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
from nbllm._providers.urls import chat_url, models_url
from nbllm.testing import Fault, ScriptedToolCall, serve
from tests.helpers import SENTINEL_KEY

URL = "http://anthropic.test"


def register(url: str = URL, name: str = "a", **fields: Any) -> str:
    models = {"claude": {"context_window": 200_000, "capabilities": ["tools", "reasoning", "vision"]}}
    fields.setdefault("key", SENTINEL_KEY)
    config = ProviderConfig(name=name, url=url, api="anthropic", models=models, **fields)
    get_store().add_provider(config, replace=True)
    return f"{name}/claude"


# -- URLs and headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://api.anthropic.com", "https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages/"],
)
def test_messages_url_with_or_without_v1(url: str) -> None:
    assert chat_url(url, "m", api="anthropic") == "https://api.anthropic.com/v1/messages"
    assert models_url(url, api="anthropic") == "https://api.anthropic.com/v1/models"


def test_headers_default_to_x_api_key_and_the_version() -> None:
    model = register()
    sent = prepare(get_store().resolve(model), ChatRequest([{"role": "user", "content": "hi"}]))
    assert sent.url == f"{URL}/v1/messages"
    assert sent.headers["x-api-key"] == SENTINEL_KEY and "Authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert SENTINEL_KEY not in json.dumps(sent.masked_headers())
    bearer = register(name="b", auth="bearer", headers={"anthropic-version": "2024-01-01"})
    sent = prepare(get_store().resolve(bearer), ChatRequest([{"role": "user", "content": "hi"}]))
    assert sent.headers["Authorization"] == f"Bearer {SENTINEL_KEY}" and "x-api-key" not in sent.headers
    assert sent.headers["anthropic-version"] == "2024-01-01"  # a configured one wins


# -- the request ------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG = "data:image/png;base64,iVBORw0KGgo="


def body_for(**request: Any) -> dict[str, Any]:
    request.setdefault("messages", [{"role": "user", "content": "hi"}])
    return prepare(get_store().resolve(register()), ChatRequest(**request)).body


def test_request_mapping() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is here?"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "Use the tool.",
            "reasoning_signature": "sig1",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "t2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "rain"},
    ]
    body = body_for(
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice="get_weather",
        stop=["END"],
        temperature=0.2,
        seed=7,
    )
    assert body["system"] == "Be brief." and body["max_tokens"] == 4096 and body["stream"] is True
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assistant = body["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": "Use the tool.", "signature": "sig1"}
    assert assistant[1] == {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "t2", "content": "rain"},
        ],
    }  # one user turn holds the round's results
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
            "description": "Weather in a city.",
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert (body["stop_sequences"], body["temperature"], "seed" in body) == (["END"], 0.2, False)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
def test_tool_choice(choice: str, expected: dict[str, str]) -> None:
    assert body_for(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


def test_effort_is_a_thinking_budget_below_the_limit() -> None:
    low = body_for(effort="low")
    assert low["thinking"] == {"type": "enabled", "budget_tokens": 1024} and low["max_tokens"] == 1024 + 4096
    capped = body_for(effort="high", max_tokens=2000)
    assert capped["thinking"]["budget_tokens"] == 1999 and capped["max_tokens"] == 2000
    assert body_for(effort="none")["thinking"] == {"type": "disabled"}
    with pytest.raises(nbllm.PromptError, match="needs --max-tokens above 1,024"):
        body_for(effort="low", max_tokens=512)


def test_json_mode_asks_in_the_system_prompt() -> None:
    body = body_for(
        json_mode=True,
        json_schema={"type": "object"},
        messages=[{"role": "system", "content": "S."}, {"role": "user", "content": "x"}],
    )
    assert (
        body["system"].startswith("S.\n\nReply with one JSON value")
        and '{"type": "object"}' in body["system"]
    )


# -- the reply, in the documented shapes ------------------------------------------------------


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return "".join(
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n" for name, data in events
    ).encode()


STREAM = sse(
    (
        "message_start",
        {
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude",
                "stop_reason": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            }
        },
    ),
    ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris needs "}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "the tool."}}),
    ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAh"}}),
    ("content_block_stop", {"index": 0}),
    ("ping", {}),
    ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Let me check."}}),
    ("content_block_stop", {"index": 1}),
    (
        "content_block_start",
        {
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
        },
    ),
    ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    (
        "content_block_delta",
        {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'}},
    ),
    ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": 'ris"}'}}),
    ("content_block_stop", {"index": 2}),
    (
        "message_delta",
        {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 89}},
    ),
    ("message_stop", {}),
)


@respx.mock
async def test_a_documented_stream_with_thinking_text_and_a_tool_call() -> None:
    respx.post(f"{URL}/v1/messages").mock(return_value=httpx.Response(200, content=STREAM))
    events = [e async for e in nbllm.astream("Weather in Paris?", register(), tools=[WEATHER_TOOL])]
    kinds = [type(e).__name__ for e in events]
    assert kinds[:2] == ["ReasoningEvent", "TokenEvent"] and kinds[-2:] == ["ToolCallEvent", "DoneEvent"]
    result = events[-1].result  # type: ignore[union-attr]
    assert (result.reasoning, result.reasoning_signature, result.text) == (
        "Paris needs the tool.",
        "EqQBCgIYAh",
        "Let me check.",
    )
    (call,) = result.tool_calls
    assert (call.id, call.name, call.parsed_arguments()) == ("toolu_01", "get_weather", {"city": "Paris"})
    assert (result.finish_reason, result.usage.prompt_tokens, result.usage.completion_tokens) == (
        "tool_calls",
        25,
        89,
    )


@respx.mock
def test_a_documented_whole_reply() -> None:
    message = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "Simple.", "signature": "sig"},
            {"type": "text", "text": "Hello!"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 12},
    }
    respx.post(f"{URL}/v1/messages").mock(return_value=httpx.Response(200, json=message))
    result = nbllm.chat("hi", register(), stream=False)
    assert (result.text, result.reasoning, result.finish_reason) == ("Hello!", "Simple.", "stop")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.estimated) == (
        10,
        12,
        False,
    )


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@respx.mock
def test_overloaded_before_any_text_is_retried_midstream_and_as_529() -> None:
    text = sse(
        ("message_start", {"message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Fine."}}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ("message_stop", {}),
    )
    route = respx.post(f"{URL}/v1/messages").mock(
        side_effect=[
            httpx.Response(200, content=sse(("error", OVERLOADED))),
            httpx.Response(529, json=OVERLOADED),
            httpx.Response(200, content=text),
        ]
    )
    get_store().add_provider(
        ProviderConfig(
            name="a",
            url=URL,
            api="anthropic",
            key=SENTINEL_KEY,
            models={"claude": {}},
            retry={"backoff_base_s": 0.01, "backoff_max_s": 0.01},
        ),
        replace=True,
    )
    result = nbllm.chat("hi", "a/claude")
    assert result.text == "Fine." and result.retries == 2 and route.call_count == 3
    assert [a.outcome for a in nbllm.history()[-1].attempts] == ["ServerError", "ServerError", "ok"]


@respx.mock
def test_errors_are_mapped_with_the_servers_words() -> None:
    refusal = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    respx.post(f"{URL}/v1/messages").mock(return_value=httpx.Response(401, json=refusal))
    with pytest.raises(nbllm.AuthenticationError, match="invalid x-api-key") as caught:
        nbllm.chat("hi", register())
    assert "sent as header x-api-key" in (caught.value.hint or "") and SENTINEL_KEY not in str(caught.value)


# -- the loopback server speaking it ----------------------------------------------------------


def get_weather(city: str) -> str:
    """Weather in a city."""
    return f"Sunny in {city}."


def test_chat_runs_a_tool_and_sends_signed_thinking_back(ip: Any) -> None:
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "final"
    ip.user_ns["get_weather"] = get_weather
    calls = [ScriptedToolCall("get_weather", {"city": "Paris"})]
    try:
        with serve(
            reasoning="I need the weather tool.",
            tool_calls=calls,
            tool_reply="It is sunny.",
            api_key=SENTINEL_KEY,
        ) as server:
            register(server.base_url.removesuffix("/v1"))
            with capture_output() as shown:
                ip.run_cell_magic("chat", "a/claude --tools get_weather --new", "Weather in Paris?")
            first, second = (r.body for r in server.requests)
    finally:
        magics.display_mode = "auto"
        ip.user_ns.pop("get_weather")
    assert [r.path for r in server.requests] == ["/v1/messages", "/v1/messages"]
    assert first["tools"][0]["name"] == "get_weather" and first["stream"] is True
    assistant = second["messages"][1]["content"]
    assert assistant[0] == {
        "type": "thinking",
        "thinking": "I need the weather tool.",
        "signature": "sig-nbllm-testing",
    }
    assert assistant[1]["type"] == "tool_use" and assistant[1]["input"] == {"city": "Paris"}
    assert second["messages"][2]["content"][0]["content"] == "Sunny in Paris."
    final = shown.outputs[-1].data["text/markdown"]
    assert (
        "get_weather" in final
        and "It is sunny." in final
        and SENTINEL_KEY not in json.dumps(shown.outputs[-1].data)
    )


def test_a_fallback_crosses_protocols() -> None:
    with (
        serve(reply="From Chat Completions.") as chat_server,
        serve(reply="unused", api_key=SENTINEL_KEY) as anthropic_server,
    ):
        anthropic_server.enqueue(*[Fault("server_error", status=529)] * 3)
        register(anthropic_server.base_url, retry={"max_retries": 0})
        get_store().add_provider(
            ProviderConfig(name="c", url=chat_server.base_url, models={"m": {}}), replace=True
        )
        result = nbllm.chat("hi", "a/claude", fallback="c/m")
    assert result.text == "From Chat Completions." and result.fallbacks == ["a/claude"]
    assert (
        anthropic_server.requests[0].path == "/v1/messages"
        and chat_server.requests[0].path == "/v1/chat/completions"
    )


@pytest.mark.parametrize("stream", [True, False])
def test_loopback_reply_in_each_framing(stream: bool) -> None:
    with serve(
        reply="One two three.", reasoning="Counting.", api_key=SENTINEL_KEY, tokens_per_s=500
    ) as server:
        result = nbllm.chat("count", register(server.base_url), stream=stream)
    assert (result.text, result.reasoning, result.reasoning_signature) == (
        "One two three.",
        "Counting.",
        "sig-nbllm-testing",
    )
    assert result.usage.completion_tokens == 4 and not result.usage.estimated


def test_dry_run_shows_the_messages_request_with_the_key_masked(ip: Any) -> None:
    register()
    with capture_output() as shown:
        ip.run_cell_magic("chat", "a/claude --dry-run --effort low", "hi")
    text = shown.stdout + "".join(str(o.data) for o in shown.outputs)
    assert f"POST {URL}/v1/messages" in text and "x-api-key: ****" in text and SENTINEL_KEY not in text
    assert '"budget_tokens": 1024' in text


@respx.mock
def test_one_tool_call_split_over_blocks_with_the_same_id_is_one_call() -> None:
    """LiteLLM 1.106's Anthropic stream opens a new tool_use block, same id, for each fragment."""
    fragments = ['{"', "city", '": "', "Paris", '"}']
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": {"id": "m", "usage": {}}})]
    for index, fragment in enumerate(fragments):
        block = {"type": "tool_use", "id": "call_0_weather", "name": "get_weather", "input": {}}
        events += [
            ("content_block_start", {"index": index, "content_block": block}),
            (
                "content_block_delta",
                {"index": index, "delta": {"type": "input_json_delta", "partial_json": fragment}},
            ),
            ("content_block_stop", {"index": index}),
        ]
    events += [
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        ("message_stop", {}),
    ]
    respx.post(f"{URL}/v1/messages").mock(return_value=httpx.Response(200, content=sse(*events)))
    (call,) = nbllm.chat("Weather?", register(), tools=[WEATHER_TOOL]).tool_calls
    assert (call.id, call.parsed_arguments()) == ("call_0_weather", {"city": "Paris"})


@respx.mock
def test_litellm_forwarding_to_a_missing_responses_endpoint_is_not_called_an_unknown_model() -> None:
    said = (
        'litellm.NotFoundError: NotFoundError: OpenAIException - {"detail":"Not Found"}\n'
        "LiteLLM: model group 'smollm2' failed with the error above. No fallback was attempted."
    )
    respx.post(f"{URL}/v1/messages").mock(return_value=httpx.Response(404, json={"error": {"message": said}}))
    with pytest.raises(nbllm.NotFoundError) as caught:
        nbllm.chat("hi", register())
    assert not isinstance(caught.value, nbllm.ModelNotFoundError)
    assert "use_chat_completions_url_for_anthropic_messages" in (caught.value.hint or "")
