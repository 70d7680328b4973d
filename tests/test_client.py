"""The client against httpx mocked at the transport (respx)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

import nbllm
from nbllm import ModelSpec, ProviderConfig
from nbllm._calls.call import run_call
from nbllm._calls.request import ChatRequest
from nbllm._calls.routes import plan_routes
from nbllm._calls.wire.chat_completions import prepare
from tests.helpers import SENTINEL_KEY

URL = "https://gw.example.com/v1/chat/completions"


@pytest.fixture
def gw() -> Iterator[None]:
    nbllm.get_store().add_provider(
        ProviderConfig(
            name="gw",
            url="https://gw.example.com/v1",
            key=SENTINEL_KEY,
            headers={"X-Title": "tests"},
            extra_body={"top_k": 5},
            retry={"max_retries": 1, "backoff_base_s": 0.0},
            models={
                "org/model:v1": ModelSpec(capabilities="tools,json"),
                "plain": ModelSpec(capabilities="no-include_usage"),
            },
        )
    )
    yield


def sse(*payloads: Any, done: bool = True) -> bytes:
    lines = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def delta(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(extra)
    if content is not None:
        d["content"] = content
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


async def call(model: str = "org/model:v1", **options: Any) -> nbllm.ChatResult:
    return await run_call(
        ChatRequest(messages=[{"role": "user", "content": "hi"}], **options), plan_routes(model)
    )


def test_request_body_and_headers(gw: None) -> None:
    resolved = nbllm.get_store().resolve("org/model:v1")
    prepared = prepare(
        resolved,
        ChatRequest(
            messages=[{"role": "user", "content": "hi"}],
            temperature=0,
            max_tokens=10,
            stop=["\n"],
            seed=1,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            tool_choice="f",
            json_schema={"type": "object"},
        ),
    )
    body = prepared.body
    assert body["model"] == "org/model:v1"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (0, 10, ["\n"], 1)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": {"type": "object"}},
    }
    assert body["top_k"] == 5
    assert prepared.headers["Authorization"] == f"Bearer {SENTINEL_KEY}"
    assert prepared.headers["X-Title"] == "tests"
    assert prepared.masked_headers()["Authorization"] == "Bearer ****"


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
def test_tool_choice_keywords(gw: None, choice: str) -> None:
    prepared = prepare(nbllm.get_store().resolve("plain"), ChatRequest(messages=[], tool_choice=choice))
    assert prepared.body["tool_choice"] == choice


def test_no_stream_options_where_the_model_disallows(gw: None) -> None:
    body = prepare(nbllm.get_store().resolve("plain"), ChatRequest(messages=[], json_mode=True)).body
    assert "stream_options" not in body
    assert body["response_format"] == {"type": "json_object"}
    assert (
        "stream_options"
        not in prepare(nbllm.get_store().resolve("org/model:v1"), ChatRequest(messages=[], stream=False)).body
    )


@respx.mock
async def test_stream_with_usage_chunk_forms(gw: None) -> None:
    for usage_chunk in ({"choices": []}, {"choices": [{"index": 0, "delta": {}}]}):
        usage = {**usage_chunk, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
        respx.post(URL).mock(
            return_value=httpx.Response(200, content=sse(delta("He"), delta("llo", "stop"), usage))
        )
        result = await call()
        assert result.text == "Hello" and result.finish_reason == "stop"
        assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.estimated) == (
            3,
            2,
            False,
        )


@respx.mock
async def test_usage_estimated_when_absent(gw: None) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(delta("Hello there friend", "stop"))))
    result = await call()
    assert result.usage.estimated and result.usage.completion_tokens > 0
    assert "~" in result.footer()


@respx.mock
@pytest.mark.parametrize(
    ("header", "cost", "reported"),
    [
        ("0.00042", 0.00042, True),
        ("0.0", None, False),  # LiteLLM's word for a model it has no price for: no report
        ("nan", None, False),
        ("inf", None, False),
        ("None", None, False),
        ("-1", None, False),
    ],
)
async def test_a_gateways_cost_header_is_the_calls_cost(
    gw: None, header: str, cost: float | None, reported: bool
) -> None:
    respx.post(URL).mock(
        return_value=httpx.Response(
            200, content=sse(delta("Hello", "stop")), headers={"x-litellm-response-cost": header}
        )
    )
    result = await call()
    assert (result.cost, result.cost_reported) == (cost, reported)
    assert nbllm.history()[-1].cost == cost


@respx.mock
async def test_finish_reason_without_done_is_complete(gw: None) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(delta("ok", "stop"), done=False)))
    assert (await call()).status == "ok"


@respx.mock
async def test_tool_call_deltas_assemble(gw: None) -> None:
    chunks = [
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        ),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}]),
        delta(tool_calls=[{"index": 1, "id": "c2", "function": {"name": "now", "arguments": "{}"}}]),
        delta(
            tool_calls=[
                {"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": 'ty": "Par'}}
            ]
        ),
        delta(tool_calls=[{"index": 0, "function": {"arguments": 'is"}'}}], finish="tool_calls"),
    ]
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(*chunks)))
    result = await call()
    assert [(c.id, c.name, c.parsed_arguments()) for c in result.tool_calls] == [
        ("c1", "get_weather", {"city": "Paris"}),
        ("c2", "now", {}),
    ]
    assert result.finish_reason == "tool_calls"


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("empty", [b"", sse()], ids=["no-events", "only-done"])
@respx.mock
async def test_an_empty_stream_for_an_automatic_tool_choice_is_asked_again_unstreamed(
    gw: None, empty: bytes
) -> None:
    """llama-cpp-python streams nothing for tool_choice auto; unstreamed, it calls the tool."""
    whole = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    route = respx.post(URL).mock(
        side_effect=[httpx.Response(200, content=empty), httpx.Response(200, json=whole)]
    )
    events = [e async for e in nbllm.astream("hi", "gw/org/model:v1", tools=[WEATHER], tool_choice="auto")]
    sent = [json.loads(c.request.content) for c in route.calls]
    assert [body["stream"] for body in sent] == [True, False]
    assert [e.kind for e in events if isinstance(e, nbllm.StatusEvent)] == ["retry"]
    done = events[-1]
    assert isinstance(done, nbllm.DoneEvent) and [c.name for c in done.result.tool_calls] == ["get_weather"]
    assert done.result.retries == 1 and nbllm.history()[-1].attempts[0].outcome == "EmptyReplyError"


@pytest.mark.parametrize("choice", ["required", "get_weather"])
@respx.mock
async def test_an_empty_stream_for_a_required_tool_is_an_error_not_asked_again(gw: None, choice: str) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, content=sse(delta(finish="stop"))))
    with pytest.raises(nbllm.EmptyReplyError):
        await call(tools=[WEATHER], tool_choice=choice)
    assert route.call_count == 1


@pytest.mark.parametrize("choice", ["required", "get_weather"])
@pytest.mark.parametrize("stream", [True, False])
@respx.mock
async def test_text_where_a_tool_call_was_required_is_an_error_keeping_the_text(
    gw: None, choice: str, stream: bool
) -> None:
    """llama.cpp's llama-server ignores tool_choice for a model whose template has no tools."""
    reply = (
        httpx.Response(200, content=sse(delta("Sunny."), delta(finish="stop")))
        if stream
        else httpx.Response(
            200, json={"choices": [{"message": {"content": "Sunny."}, "finish_reason": "stop"}]}
        )
    )
    route = respx.post(URL).mock(return_value=reply)
    with pytest.raises(nbllm.ToolChoiceIgnoredError, match="requires a tool call") as caught:
        await call(tools=[WEATHER], tool_choice=choice, stream=stream)
    assert caught.value.result.text == "Sunny." and "ignored tool_choice" in (caught.value.hint or "")
    assert route.call_count == 1 and nbllm.history()[-1].error_class == "ToolChoiceIgnoredError"


@respx.mock
async def test_text_for_an_automatic_tool_choice_is_a_reply(gw: None) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(delta("Sunny."), delta(finish="stop"))))
    result = await call(tools=[WEATHER], tool_choice="auto")
    assert result.text == "Sunny." and result.status == "ok" and result.tool_calls == []


@pytest.mark.parametrize("dead", [httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError])
@respx.mock
async def test_a_dead_pooled_connection_is_resent_once_at_once(gw: None, dead: type[Exception]) -> None:
    route = respx.post(URL).mock(
        side_effect=[dead("closed"), httpx.Response(200, content=sse(delta("Hi"), delta(finish="stop")))]
    )
    result = await call()
    assert result.text == "Hi" and result.retries == 0 and route.call_count == 2
    assert len(nbllm.history()[-1].attempts) == 1


@respx.mock
async def test_a_connection_that_fails_twice_is_an_error_for_the_retry_policy(gw: None) -> None:
    route = respx.post(URL).mock(side_effect=httpx.ReadError("closed"))
    with pytest.raises(nbllm.APIConnectionError, match="failed: closed"):
        await call()
    assert route.call_count == 4  # two attempts (max_retries 1), each sent twice


@respx.mock
async def test_non_streaming(gw: None) -> None:
    payload = {
        "choices": [{"message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1},
    }
    route = respx.post(URL).mock(return_value=httpx.Response(200, json=payload))
    result = await call(stream=False)
    assert (result.text, result.usage.completion_tokens) == ("Hi!", 1)
    assert json.loads(route.calls[0].request.content)["stream"] is False


@pytest.mark.parametrize(
    ("status", "body", "error", "hint"),
    [
        (401, {"error": {"message": "Incorrect API key"}}, nbllm.AuthenticationError, "header style"),
        (401, {"detail": "Invalid API key"}, nbllm.AuthenticationError, "--auth azure"),
        (403, {"error": {"message": "not allowed"}}, nbllm.PermissionDeniedError, "permissions"),
        (404, {"error": {"message": "Not found"}}, nbllm.NotFoundError, "/v1"),
        (
            404,
            {"error": {"message": "The model `x` does not exist", "code": "model_not_found"}},
            nbllm.ModelNotFoundError,
            "discover",
        ),
        (
            400,
            {"detail": "Model other is not served; this server serves m"},
            nbllm.ModelNotFoundError,
            "discover",
        ),
        (
            400,
            {"error": {"message": "This model's maximum context length is 4096 tokens"}},
            nbllm.ContextTooLongError,
            "shorten",
        ),
        (
            400,
            {  # llama.cpp's llama-server, as the conformance suite saw it
                "error": {
                    "code": 400,
                    "message": "request (7036 tokens) exceeds the available context size (2048 tokens), "
                    "try increasing it",
                    "type": "exceed_context_size_error",
                }
            },
            nbllm.ContextTooLongError,
            "shorten",
        ),
        (
            422,
            {"detail": [{"msg": "Extra inputs are not permitted", "loc": ["body", "stream_options"]}]},
            nbllm.BadRequestError,
            "no-include_usage",
        ),
        (400, "plain text failure", nbllm.BadRequestError, "--dry-run"),
        (418, {"message": "teapot"}, nbllm.BadRequestError, "server's message"),
    ],
)
@respx.mock
async def test_errors_fail_fast_with_upstream_message_and_hint(
    gw: None, status: int, body: Any, error: type[Exception], hint: str
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    route = respx.post(URL).mock(
        return_value=httpx.Response(status, content=content, headers={"x-request-id": "rq-9"})
    )
    with pytest.raises(error) as info:
        await call()
    assert type(info.value) is error
    assert hint in str(info.value) and "rq-9" in str(info.value)
    assert info.value.status == status  # type: ignore[attr-defined]
    assert route.call_count == 1  # not retried
    assert SENTINEL_KEY not in str(info.value)
    record = nbllm.history()[-1]
    assert record.status == "error" and record.error_class == error.__name__ and record.request_id == "rq-9"


@respx.mock
async def test_server_error_retried_then_raised(gw: None) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(503, json={"error": {"message": "overloaded"}}))
    with pytest.raises(nbllm.ServerError, match="overloaded"):
        await call()
    assert route.call_count == 2  # max_retries=1
    assert nbllm.history()[-1].retries == 1 and len(nbllm.history()[-1].attempts) == 2


@respx.mock
async def test_error_object_mid_stream(gw: None) -> None:
    respx.post(URL).mock(
        return_value=httpx.Response(
            200, content=sse(delta("par"), {"error": {"message": "tool parser failed"}})
        )
    )
    with pytest.raises(nbllm.StreamError, match="tool parser failed") as info:
        await call()
    assert "--caps no-" in str(info.value)
    assert info.value.result.text == "par"


@respx.mock
async def test_cross_origin_redirect_drops_the_key(gw: None) -> None:
    respx.post(URL).mock(
        return_value=httpx.Response(
            307, headers={"location": "https://other.example.net/v1/chat/completions"}
        )
    )
    target = respx.post("https://other.example.net/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=sse(delta("moved", "stop")))
    )
    assert (await call()).text == "moved"
    sent = target.calls[0].request.headers
    assert "authorization" not in sent and SENTINEL_KEY not in str(sent)
    # None of the provider's configured headers either (issue 14: a ${VAR} header leaked so).
    assert "x-title" not in sent and sent["user-agent"].startswith("nbllm/")


@respx.mock
async def test_a_secret_header_from_the_environment_is_not_sent_to_another_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBLLM_TEST_GATEWAY_KEY", SENTINEL_KEY)
    nbllm.get_store().add_provider(
        ProviderConfig(
            name="gw2",
            url="https://gw2.example.com/v1",
            auth="none",
            headers={"X-Api-Key": "${NBLLM_TEST_GATEWAY_KEY}"},
            models=["m"],
        )
    )
    first = respx.post("https://gw2.example.com/v1/chat/completions").mock(
        return_value=httpx.Response(308, headers={"location": "https://evil.example.org:8443/v1/chat"})
    )
    target = respx.post("https://evil.example.org:8443/v1/chat").mock(
        return_value=httpx.Response(401, json={"error": {"message": "no key"}})
    )
    with pytest.raises(nbllm.AuthenticationError) as caught:
        await run_call(ChatRequest(messages=[{"role": "user", "content": "hi"}]), plan_routes("gw2/m"))
    assert first.calls[0].request.headers["x-api-key"] == SENTINEL_KEY  # the provider's own host
    sent = target.calls[0].request.headers
    assert "x-api-key" not in sent and SENTINEL_KEY not in str(sent)
    message = str(caught.value)
    assert "redirected to another host (evil.example.org:8443)" in message and SENTINEL_KEY not in message


@respx.mock
async def test_a_redirect_to_a_non_http_url_is_a_protocol_error(gw: None) -> None:
    respx.post(URL).mock(return_value=httpx.Response(307, headers={"location": "data:,x"}))
    with pytest.raises(nbllm.ProtocolError, match=r"not an HTTP URL|non-HTTP URL"):
        await call()
    assert nbllm.history()[-1].status == "error"


@respx.mock
async def test_same_origin_redirect_keeps_the_key(gw: None) -> None:
    respx.post(URL).mock(return_value=httpx.Response(308, headers={"location": "/v2/chat/completions"}))
    target = respx.post("https://gw.example.com/v2/chat/completions").mock(
        return_value=httpx.Response(200, content=sse(delta("ok", "stop")))
    )
    await call()
    assert target.calls[0].request.headers["authorization"] == f"Bearer {SENTINEL_KEY}"


@respx.mock
async def test_missing_key_fails_before_sending(gw: None) -> None:
    nbllm.get_store().add_provider(
        ProviderConfig(
            name="nokey", url="https://gw.example.com/v1", key_env="NBLLM_TEST_UNSET", models=["m"]
        )
    )
    route = respx.post(URL)
    with pytest.raises(nbllm.MissingKeyError, match="NBLLM_TEST_UNSET"):
        await call("nokey/m")
    assert route.call_count == 0


@respx.mock
async def test_events_of_one_read_become_one_token_event(gw: None) -> None:
    from nbllm._calls.call import stream_call

    respx.post(URL).mock(
        return_value=httpx.Response(
            200, content=sse(delta("Hel"), delta("lo "), delta("there", finish="stop"))
        )
    )
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    events = [e async for e in stream_call(request, plan_routes("org/model:v1"))]
    tokens = [e.text for e in events if isinstance(e, nbllm.TokenEvent)]
    assert tokens == ["Hello there"]  # respx delivers the body in one read
    assert isinstance(events[-1], nbllm.DoneEvent) and events[-1].result.text == "Hello there"


@respx.mock
async def test_a_call_takes_its_routes_and_resolves_no_name_again(
    gw: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is decided once (plan_routes); the call below it never asks the store again."""
    nbllm.get_store().add_provider(
        ProviderConfig(name="spare", url="https://spare.example.com/v1", key=SENTINEL_KEY, models=["s"])
    )
    routes = plan_routes("org/model:v1", "spare/s")
    assert [r.qualified_name for r in routes] == ["gw/org/model:v1", "spare/s"]

    def resolve_again(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a call resolved a model name again")

    monkeypatch.setattr(nbllm.Store, "resolve", resolve_again)
    respx.post(URL).mock(return_value=httpx.Response(503))
    respx.post("https://spare.example.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=sse(delta("ok", "stop")))
    )
    result = await run_call(ChatRequest(messages=[{"role": "user", "content": "hi"}]), routes)
    assert (result.text, result.model, result.fallbacks) == ("ok", "spare/s", ["gw/org/model:v1"])


@respx.mock
async def test_a_key_the_server_quotes_back_is_masked_in_the_error(gw: None) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {SENTINEL_KEY}"}}
    respx.post(URL).mock(return_value=httpx.Response(401, json=body))
    with pytest.raises(nbllm.AuthenticationError) as caught:
        await call()
    error = caught.value
    assert "Incorrect API key provided: ****" in str(error)
    assert SENTINEL_KEY not in f"{error} {error.upstream_message} {json.dumps(error.body)} {error.result!r}"
    assert SENTINEL_KEY not in repr(nbllm.history()[-1])
