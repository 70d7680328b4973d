"""Whatever a server sends, the caller gets a result or an nbllm error, the history records
what really happened, and quoted server text stays small (issue 14's table, each case)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

import nbllm
from nbllm import ModelSpec, ProviderConfig
from nbllm._calls.call import run_call
from nbllm._calls.request import ChatRequest
from nbllm._calls.routes import plan_routes
from tests.helpers import SENTINEL_KEY

URL = "https://hostile.example.com/v1/chat/completions"


@pytest.fixture(autouse=True)
def hostile() -> Iterator[None]:
    nbllm.get_store().add_provider(
        ProviderConfig(
            name="h",
            url="https://hostile.example.com/v1",
            key=SENTINEL_KEY,
            retry={"max_retries": 0},
            models={"m": ModelSpec(context_window=1000)},
        )
    )
    yield


def sse(*payloads: Any, done: bool = True) -> bytes:
    lines = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    return ("".join(lines) + ("data: [DONE]\n\n" if done else "")).encode()


def text(content: Any, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


async def ask(prompt: str = "hi", **options: Any) -> nbllm.ChatResult:
    request = ChatRequest(messages=[{"role": "user", "content": prompt}], **options)
    return await run_call(request, plan_routes("h/m"))


HOSTILE = [
    pytest.param(httpx.Response(200, content=sse('{"choices":[[]]}')), id="choices-holds-a-list"),
    pytest.param(httpx.Response(200, content=sse(text(5))), id="content-is-a-number"),
    pytest.param(httpx.Response(200, content=sse('{"choices": [{"delta": "x"}]}')), id="delta-is-a-string"),
    pytest.param(httpx.Response(200, content=sse("[" * 50_000 + "]" * 50_000)), id="50000-deep-json"),
    pytest.param(httpx.Response(200, content=sse("not json at all")), id="not-json"),
    pytest.param(httpx.Response(200, json={"choices": {"a": 1}}), id="whole-choices-is-an-object"),
    pytest.param(
        httpx.Response(200, stream=httpx.ByteStream(b"\x00garbage"), headers={"content-encoding": "deflate"}),
        id="deflate-garbage",
    ),
    pytest.param(
        httpx.Response(200, content=sse(json.dumps({"choices": [{"delta": {"tool_calls": [5]}}]}))),
        id="tool-call-delta-is-a-number",
    ),
]


@respx.mock
@pytest.mark.parametrize("reply", HOSTILE)
async def test_a_hostile_reply_is_a_protocol_error_recorded_as_such(reply: httpx.Response) -> None:
    respx.post(URL).mock(return_value=reply)
    stream = reply.headers.get("content-type") != "application/json"
    with pytest.raises(nbllm.ProtocolError) as caught:
        await ask(stream=stream)
    message = str(caught.value)
    assert message.startswith("h/m ") and len(message) < 3000 and SENTINEL_KEY not in message
    record = nbllm.history()[-1]
    assert record.status == "error" and record.error_class == "ProtocolError"


@respx.mock
async def test_an_error_status_with_a_non_ascii_header_is_an_nbllm_error() -> None:
    respx.post(URL).mock(
        return_value=httpx.Response(400, headers=[(b"server", "café ☃".encode())], json={"error": "no"})
    )
    with pytest.raises(nbllm.BadRequestError, match="HTTP 400: no"):
        await ask()


@respx.mock
async def test_a_huge_error_message_is_quoted_with_a_cut() -> None:
    respx.post(URL).mock(return_value=httpx.Response(400, json={"error": {"message": "x" * 200_000}}))
    with pytest.raises(nbllm.BadRequestError) as caught:
        await ask()
    message = str(caught.value)
    assert len(message) < 2500 and "(198,000 more characters)" in message


@respx.mock
@pytest.mark.parametrize("count", ["NaN", "1e999", '"12"', "-3", "true"])
async def test_usage_that_is_not_a_count_is_ignored_and_estimated(count: str) -> None:
    usage = '{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": COUNT}}'.replace(
        "COUNT", count
    )
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text("fine", "stop"), usage)))
    result = await ask()
    assert (result.text, result.status) == ("fine", "ok") and result.usage.estimated


@respx.mock
async def test_an_empty_reply_is_not_a_success() -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text(None, "stop"))))
    with pytest.raises(nbllm.EmptyReplyError) as caught:
        await ask()
    assert "--no-stream" in str(caught.value) and caught.value.result.status == "error"
    assert nbllm.history()[-1].error_class == "EmptyReplyError"


@respx.mock
async def test_an_empty_reply_to_a_prompt_near_the_window_is_context_too_long() -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text(None, "stop"))))
    with pytest.raises(nbllm.ContextTooLongError, match="context window is 1,000"):
        await ask("word " * 800, check_context=False)  # sent anyway: the pre-flight is tested apart


@respx.mock
async def test_a_reply_cut_by_the_token_limit_before_any_text_says_so() -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text(None, "length"))))
    with pytest.raises(nbllm.EmptyReplyError, match="raise --max-tokens"):
        await ask()


def _after_done(then: str) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        yield sse(text("whole reply", "stop"))
        if then == "reset":
            raise httpx.ReadError("connection reset by peer")
        await asyncio.sleep(30)  # a stall: the reply is complete, nothing should wait for this

    return httpx.Response(200, content=body())


@respx.mock
@pytest.mark.parametrize("then", ["reset", "stall"])
async def test_a_complete_reply_then_a_reset_or_stall_is_still_the_reply(then: str) -> None:
    respx.post(URL).mock(return_value=_after_done(then))
    started = time.perf_counter()
    result = await ask()
    assert (result.text, result.status, result.finish_reason) == ("whole reply", "ok", "stop")
    assert time.perf_counter() - started < 5


@respx.mock
async def test_finish_reason_without_done_then_a_stall_returns_within_the_grace() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield sse(text("no done marker", "stop"), done=False)
        await asyncio.sleep(30)

    respx.post(URL).mock(return_value=httpx.Response(200, content=body()))
    started = time.perf_counter()
    result = await ask()
    assert result.text == "no done marker" and result.status == "ok"
    assert time.perf_counter() - started < 5


@respx.mock
async def test_text_before_a_bad_chunk_is_kept_on_the_error() -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text("kept "), text(["bad"]))))
    with pytest.raises(nbllm.ProtocolError) as caught:
        await ask()
    assert caught.value.result.text == "kept "


@respx.mock
async def test_transformers_serves_pinned_model_is_model_not_found() -> None:
    respx.post(URL).mock(
        return_value=httpx.Response(400, json={"detail": "Server is pinned to org/a; requested org/b"})
    )
    with pytest.raises(nbllm.ModelNotFoundError, match="discover"):
        await ask()


@respx.mock
async def test_litellms_no_connected_db_is_a_wrong_key_named_by_its_origin() -> None:
    respx.post(URL).mock(return_value=httpx.Response(400, json={"error": {"message": "No connected db."}}))
    with pytest.raises(nbllm.AuthenticationError) as caught:
        await ask()
    said = f"{caught.value} {caught.value.hint}"
    assert caught.value.status == 400 and "master key" in said and "stream_options" not in said
    assert "key" in (caught.value.hint or "") and "rejected" in (caught.value.hint or "")


@respx.mock
async def test_json_cut_off_by_the_token_limit_is_incomplete() -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text('{"a": [1, 2,', "length"))))
    with pytest.raises(nbllm.IncompleteStreamError, match="cut off at the token limit") as caught:
        await ask(json_mode=True)
    assert caught.value.result.status == "incomplete" and caught.value.result.text == '{"a": [1, 2,'


@respx.mock
async def test_json_in_a_code_fence_is_decoded() -> None:
    fenced = '```json\n{"a": 1}\n```'
    respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text(fenced, "stop"))))
    assert (await ask(json_mode=True)).parsed == {"a": 1}


@respx.mock
async def test_the_preflight_uses_the_servers_tokenizer_once_found() -> None:
    from nbllm._calls.learned import learned

    assert learned().tokenizer_paths == {}  # a fresh session knows no tokenizer
    extras = respx.post("https://hostile.example.com/extras/tokenize").mock(return_value=httpx.Response(404))
    tokenize = respx.post("https://hostile.example.com/tokenize").mock(
        return_value=httpx.Response(200, json={"tokens": list(range(1200))})
    )
    chat = respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text("ok", "stop"))))
    for _ in range(2):
        with pytest.raises(
            nbllm.ContextTooLongError, match=r"1,204 tokens \(counted by the server's tokenizer"
        ):
            await ask("word " * 500)  # nbllm's estimate, about 500 tokens, alone would let it through
    assert (extras.call_count, tokenize.call_count, chat.call_count) == (1, 2, 0)
    assert (await ask("short")).text == "ok"  # far from the window: no count is asked for
    assert tokenize.call_count == 2


@respx.mock
async def test_without_a_tokenizer_the_estimate_gets_a_margin() -> None:
    from nbllm._calls.learned import learned

    assert learned().tokenizer_paths == {}  # a fresh session knows no tokenizer
    respx.post(url__regex=r".*/tokenize$").mock(return_value=httpx.Response(404))
    chat = respx.post(URL).mock(return_value=httpx.Response(200, content=sse(text("ok", "stop"))))
    with pytest.raises(nbllm.ContextTooLongError, match=r"estimated, with a 1.25x margin"):
        await ask("x" * 3400)  # about 850 tokens by the estimate, 1,062 with the margin
    assert (await ask("x" * 3000, max_tokens=10)).text == "ok" and chat.call_count == 1
