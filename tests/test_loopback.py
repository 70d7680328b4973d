"""The whole call path against `nbllm.testing`'s loopback server: a real HTTP stack."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nbllm
from nbllm import ModelSpec, ProviderConfig
from nbllm.testing import Fault, LoopbackServer, ScriptedToolCall, serve
from tests.helpers import SENTINEL_KEY

REPLY = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve(REPLY, tokens_per_s=400, api_key=SENTINEL_KEY, models=["test-model", "other"]) as srv:
        yield srv


def register(server: LoopbackServer, name: str = "t", **fields: Any) -> None:
    config = {
        "name": name,
        "url": server.base_url,
        "key": SENTINEL_KEY,
        "read_timeout_s": 1.0,
        "retry": {"max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
        "models": {"test-model": ModelSpec(context_window=2048)},
        **fields,
    }
    nbllm.get_store().add_provider(ProviderConfig(**config), replace=True)


@pytest.mark.parametrize("stream", [True, False])
def test_plain_call(server: LoopbackServer, stream: bool) -> None:
    register(server)
    result = nbllm.chat("hi", model="t/test-model", stream=stream, temperature=0)
    assert result.text == REPLY and result.status == "ok" and result.finish_reason == "stop"
    assert not result.usage.estimated and result.usage.completion_tokens == 9
    assert result.ttft_s is not None and result.latency_s is not None and result.ttft_s <= result.latency_s
    sent = server.requests[-1]
    assert sent.body["model"] == "test-model" and sent.body["temperature"] == 0
    assert sent.headers["authorization"] == f"Bearer {SENTINEL_KEY}"
    record = nbllm.history()[-1]
    assert (record.status, record.model, record.host) == ("ok", "t/test-model", server.base_url.split("/")[2])
    assert record.started_at.tzinfo is not None
    # A streamed reply has a speed; a whole one arrives at once, and has none to show.
    assert bool(record.tokens_per_s) is stream


RECOVERED = [
    Fault("rate_limit", retry_after="0.05"),
    Fault("rate_limit", retry_after_ms=30),
    Fault("server_error", status=500),
    Fault("server_error", status=503),
    Fault("reset", after_chunks=0),
    Fault("slow_first_byte", seconds=0.2),
    Fault("stall", seconds=2.0),  # longer than the 1 s read timeout: retried
]
STREAM_ONLY = [Fault("crlf"), Fault("byte_writes")]  # line framing exists only in streams


@pytest.mark.parametrize(
    ("stream", "fault"),
    [(True, f) for f in RECOVERED + STREAM_ONLY] + [(False, f) for f in RECOVERED],
)
def test_recovered_faults(server: LoopbackServer, stream: bool, fault: Fault) -> None:
    register(server)
    server.enqueue(fault)
    result = nbllm.chat("hi", model="test-model", stream=stream)
    assert result.text == REPLY and result.status == "ok"
    # A reset before any byte of the response is sent again at once, as for a pooled connection
    # the server closed (client._send); a reset after the stream's headers is one of the retries.
    resent = fault.kind == "reset" and not stream
    retried = fault.kind in ("rate_limit", "server_error", "reset", "stall") and not resent
    assert result.retries == (1 if retried else 0)
    assert len(server.requests) == (2 if retried or resent else 1)
    assert nbllm.history()[-1].status == "ok"


def test_rate_limit_status_event(server: LoopbackServer) -> None:
    register(server)
    server.enqueue(Fault("rate_limit", retry_after="0.05"))

    async def collect() -> list[Any]:
        return [e async for e in nbllm.astream("hi", model="test-model")]

    events = asyncio.run(collect())
    status = [e for e in events if isinstance(e, nbllm.StatusEvent)]
    assert status[0].kind == "rate_limited"
    assert status[0].message == "rate limited, retrying in 0.1 s, attempt 2 of 3"
    assert isinstance(events[-1], nbllm.DoneEvent)


@pytest.mark.parametrize(
    ("fault", "error", "partial", "status"),
    [
        (Fault("reset", after_chunks=3), nbllm.APIConnectionError, "The quick brown ", "error"),
        (Fault("stall", after_chunks=2, seconds=3.0), nbllm.APITimeoutError, "The quick ", "error"),
        (Fault("malformed", after_chunks=2), nbllm.StreamError, "The quick ", "error"),
        (
            Fault("error_event", after_chunks=2, message="backend exploded"),
            nbllm.StreamError,
            "The quick ",
            "error",
        ),
        (Fault("no_done"), nbllm.IncompleteStreamError, REPLY, "incomplete"),
    ],
)
def test_mid_stream_failures_keep_partial_text(
    server: LoopbackServer, fault: Fault, error: type[Exception], partial: str, status: str
) -> None:
    register(server)
    server.enqueue(fault)
    started = time.monotonic()
    with pytest.raises(error) as info:
        nbllm.chat("hi", model="test-model")
    assert time.monotonic() - started < 5
    result = info.value.result  # type: ignore[attr-defined]
    assert result.text == partial and result.status == status
    record = nbllm.history()[-1]
    assert record.status == status and record.retries == 0  # content was shown: never retried
    assert len(server.requests) == 1
    assert SENTINEL_KEY not in str(info.value)


def test_finish_without_done_is_complete(server: LoopbackServer) -> None:
    register(server)
    server.enqueue(Fault("finish_no_done"))
    assert nbllm.chat("hi", model="test-model").status == "ok"


@pytest.mark.parametrize("stream", [True, False])
def test_persistent_failure_raises_after_retries(server: LoopbackServer, stream: bool) -> None:
    register(server)
    server.enqueue(*[Fault("server_error", status=502)] * 3)
    with pytest.raises(nbllm.ServerError):
        nbllm.chat("hi", model="test-model", stream=stream)
    record = nbllm.history()[-1]
    assert record.retries == 2 and len(record.attempts) == 3 and record.status == "error"
    assert [a.http_status for a in record.attempts] == [502, 502, 502]


@pytest.mark.parametrize("stream", [True, False])
def test_non_retryable_faults(server: LoopbackServer, stream: bool) -> None:
    register(server)
    server.enqueue(Fault("unknown_model"))
    with pytest.raises(nbllm.ModelNotFoundError, match="does not exist"):
        nbllm.chat("hi", model="test-model", stream=stream)
    assert len(server.requests) == 1
    server.enqueue(Fault("malformed"))
    with pytest.raises(nbllm.StreamError, match="not JSON"):
        nbllm.chat("hi", model="test-model", stream=stream)


def test_wrong_key(server: LoopbackServer) -> None:
    register(server, key="wrong-key")
    with pytest.raises(nbllm.AuthenticationError, match="Incorrect API key") as info:
        nbllm.chat("hi", model="test-model")
    assert "wrong-key" not in str(info.value)


def test_missing_v1_gets_the_hint(server: LoopbackServer) -> None:
    register(server, url=server.base_url.removesuffix("/v1"))
    with pytest.raises(nbllm.NotFoundError, match="/v1"):
        nbllm.chat("hi", model="test-model")


def test_retry_after_past_ceiling_names_the_wait(server: LoopbackServer) -> None:
    register(server)
    server.enqueue(Fault("rate_limit", retry_after="120"))
    started = time.monotonic()
    with pytest.raises(nbllm.RateLimitError, match="asks to wait 120 s"):
        nbllm.chat("hi", model="test-model")
    assert time.monotonic() - started < 5


def test_fallback_on_rate_limit_and_server_error(server: LoopbackServer) -> None:
    with serve("From the backup.") as backup:
        register(server, retry={"max_retries": 0})
        register(backup, name="backup", models={"b": ModelSpec()})
        server.enqueue(Fault("rate_limit", retry_after="999"))
        result = nbllm.chat("hi", model="t/test-model", fallback="backup/b")
        assert result.text == "From the backup." and result.model == "backup/b"
        assert result.fallbacks == ["t/test-model"]
        assert nbllm.history()[-1].fallbacks == ["t/test-model"]
        assert [a.model for a in nbllm.history()[-1].attempts] == ["t/test-model", "backup/b"]
        server.enqueue(Fault("server_error", status=500))
        assert nbllm.chat("hi", model="t/test-model", fallback=["backup/b"]).model == "backup/b"


def test_no_fallback_on_client_errors(server: LoopbackServer) -> None:
    with serve("From the backup.") as backup:
        register(server)
        register(backup, name="backup", models={"b": ModelSpec()})
        server.enqueue(Fault("unknown_model"))
        with pytest.raises(nbllm.ModelNotFoundError):
            nbllm.chat("hi", model="t/test-model", fallback="backup/b")
        assert backup.requests == []


def test_provider_fallback_and_connection_refused(server: LoopbackServer) -> None:
    register(server, name="backup")
    dead = ProviderConfig(
        name="dead",
        url="http://127.0.0.1:9/v1",
        retry={"max_retries": 0},
        fallback=["backup/test-model"],
        models=["m"],
    )
    nbllm.get_store().add_provider(dead)
    result = nbllm.chat("hi", model="dead/m")
    assert result.model == "backup/test-model" and result.fallbacks == ["dead/m"]


def test_connection_refused_error(server: LoopbackServer) -> None:
    nbllm.get_store().add_provider(
        ProviderConfig(name="dead", url="http://127.0.0.1:9/v1", retry={"max_retries": 0}, models=["m"])
    )
    with pytest.raises(nbllm.APIConnectionError, match="server is running"):
        nbllm.chat("hi", model="dead/m")


def test_rate_limit_shared_by_concurrent_calls(server: LoopbackServer) -> None:
    register(server, requests_per_second=10.0)

    async def burst() -> None:
        await asyncio.gather(*(nbllm.achat("hi", model="test-model") for _ in range(4)))

    asyncio.run(burst())
    times = sorted(r.at for r in server.requests)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.07  # 10 per second: about 0.1 s apart, never all at once


def test_tool_calls_stream_assembled(server: LoopbackServer) -> None:
    server.tool_calls = [ScriptedToolCall("get_weather", {"city": "Paris", "unit": "celsius"})]
    register(server, models={"test-model": ModelSpec(context_window=2048, capabilities="tools")})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    result = nbllm.chat("weather?", model="test-model", tools=tools, tool_choice="get_weather")
    assert result.finish_reason == "tool_calls"
    assert [(c.name, c.parsed_arguments()) for c in result.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"})
    ]


async def test_cancellation_closes_the_connection(server: LoopbackServer) -> None:
    server.tokens_per_s = 20
    server.reply = "word " * 200
    register(server)
    received: list[str] = []

    async def consume() -> None:
        async for event in nbllm.astream("hi", model="test-model"):
            if isinstance(event, nbllm.TokenEvent):
                received.append(event.text)

    task = asyncio.create_task(consume())
    while len(received) < 3:
        await asyncio.sleep(0.01)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 2
    while not server.disconnects and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.disconnects and server.disconnects[0] - cancelled_at < 0.5
    record = nbllm.history()[-1]
    assert record.status == "cancelled" and record.completion_tokens >= 3
    assert "".join(received).startswith("word word word")


def test_sync_chat_inside_a_running_loop(server: LoopbackServer) -> None:
    register(server)

    async def inside_a_kernel_like_loop() -> str:
        return nbllm.chat("hi", model="test-model").text  # must not re-enter this loop

    assert asyncio.run(inside_a_kernel_like_loop()) == REPLY


def test_history_summaries(server: LoopbackServer) -> None:
    register(server)
    for _ in range(3):
        nbllm.chat("hi", model="test-model")
    server.enqueue(Fault("unknown_model"))
    with pytest.raises(nbllm.ModelNotFoundError):
        nbllm.chat("hi", model="test-model")
    summary = nbllm.get_history().summaries()["t/test-model"]
    assert (summary.calls, summary.errors) == (4, 1)
    assert summary.p50_latency_s is not None and summary.p95_latency_s >= summary.p50_latency_s  # type: ignore[operator]


def test_each_record_is_the_result_it_was_derived_from(server: LoopbackServer) -> None:
    register(server)
    server.enqueue(Fault("server_error", status=503))
    result = nbllm.chat("hi", model="test-model")
    server.enqueue(Fault("unknown_model"))
    with pytest.raises(nbllm.ModelNotFoundError) as caught:
        nbllm.chat("hi", model="test-model")
    failed = caught.value.result
    ok_record, error_record = nbllm.history()[-2:]
    for record, source in ((ok_record, result), (error_record, failed)):
        assert (record.model, record.status, record.retries, record.request_id) == (
            source.model,
            source.status,
            source.retries,
            source.request_id,
        )
        assert (record.ttft_s, record.latency_s, record.error_message) == (
            source.ttft_s,
            source.latency_s,
            source.error,
        )
        assert (record.prompt_tokens, record.completion_tokens, record.tokens_estimated) == (
            source.usage.prompt_tokens,
            source.usage.completion_tokens,
            source.usage.estimated,
        )
    assert ok_record.retries == 1 and [a.http_status for a in ok_record.attempts] == [503, 200]
    assert error_record.error_class == "ModelNotFoundError" and error_record.status == "error"


def test_runs_as_a_module() -> None:
    import subprocess
    import sys

    import httpx

    with subprocess.Popen(
        [sys.executable, "-m", "nbllm.testing", "--port", "0", "--model", "m1", "--framing", "bytes"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            base_url = line.rsplit(" ", 1)[-1].strip()
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            assert httpx.get(f"{base_url}/models").json()["data"][0]["id"] == "m1"
            body = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            with httpx.stream("POST", f"{base_url}/chat/completions", json=body) as response:
                reads = [piece for piece in response.iter_raw()]
            assert max(len(piece) for piece in reads) <= 3 and b"[DONE]" in b"".join(reads)
        finally:
            process.terminate()


def test_error_object_in_a_whole_reply(server: LoopbackServer) -> None:
    register(server)
    server.enqueue(Fault("error_event", message="backend exploded"))
    with pytest.raises(nbllm.StreamError, match="backend exploded"):
        nbllm.chat("hi", model="test-model", stream=False)
    assert nbllm.history()[-1].status == "error" and len(server.requests) == 1


def test_interrupting_sync_chat_cancels_the_call(server: LoopbackServer) -> None:
    """A kernel interrupt (SIGINT -> KeyboardInterrupt in the main thread) during chat()."""
    import signal

    server.tokens_per_s = 20
    server.reply = "word " * 200
    register(server)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.4)
    try:
        with pytest.raises(KeyboardInterrupt):
            nbllm.chat("hi", model="test-model")
        interrupted_at = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    deadline = time.monotonic() + 2
    while not server.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.disconnects and server.disconnects[0] - interrupted_at < 0.5
    record = nbllm.history()[-1]
    assert record.status == "cancelled" and record.completion_tokens > 0
    server.tokens_per_s = None
    assert nbllm.chat("again", model="test-model").status == "ok"  # still usable afterwards


def test_stands_in_for_azure_openai(server: LoopbackServer) -> None:
    nbllm.get_store().add_provider(
        ProviderConfig(
            name="az",
            url=server.base_url.removesuffix("/v1"),
            auth="azure",
            api_version="2024-10-21",
            key=SENTINEL_KEY,
            models=["gpt-4o-prod"],
        )
    )
    assert nbllm.chat("hi", model="az/gpt-4o-prod").text == REPLY
    request = server.requests[-1]
    assert request.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert request.headers["api-key"] == SENTINEL_KEY and "authorization" not in request.headers


def test_a_stopped_call_is_counted_apart_from_errors() -> None:
    """Issue 35, item 5: cancelled calls counted as errors ("1 calls, 1 errors")."""
    from datetime import datetime, timezone

    from nbllm._calls.history import CallRecord, History

    history = History()
    for status in ("ok", "cancelled", "error"):
        history.add(
            CallRecord(
                model="p/m",
                requested="p/m",
                host="h",
                started_at=datetime.now(timezone.utc),
                status=status,  # type: ignore[arg-type]
            )
        )
    summary = history.summaries()["p/m"]
    assert (summary.calls, summary.errors, summary.stopped) == (3, 1, 1)
