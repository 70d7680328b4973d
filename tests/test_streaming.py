"""Streaming as real servers frame it, and pooled connections, against the loopback server.

Real servers (uvicorn apps, vLLM, llama.cpp, OpenAI) send each server-sent event as its own
HTTP chunk; a client that pauses per read is then slowed per token. These tests are
functional, with generous bounds; speed targets live in bench/bench_stream.py.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nbllm
from nbllm import ProviderConfig
from nbllm._calls import pool
from nbllm.testing import FRAMINGS, LoopbackServer, serve

LONG_REPLY = " ".join(f"w{i}" for i in range(500))


def register(server: LoopbackServer, **fields: Any) -> None:
    config = {"name": "s", "url": server.base_url, "auth": "none", "models": ["m"], **fields}
    nbllm.get_store().add_provider(ProviderConfig(**config), replace=True)


@pytest.fixture
def fast() -> Iterator[LoopbackServer]:
    with serve(LONG_REPLY) as server:
        register(server)
        yield server


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("stream", [True, False])
def test_every_framing_gives_the_exact_reply(framing: str, stream: bool) -> None:
    with serve("Hello there, general reader!", framing=framing) as server:
        register(server)
        result = nbllm.chat("hi", stream=stream)
    assert (result.text, result.status, result.finish_reason) == (
        "Hello there, general reader!",
        "ok",
        "stop",
    )


def test_500_chunked_events_at_full_speed_arrive_whole_and_quickly(fast: LoopbackServer) -> None:
    """With a 40 ms pause per read this took 20 s; the bound is loose but catches that."""
    started = time.perf_counter()
    result = nbllm.chat("go")
    elapsed = time.perf_counter() - started
    assert result.text == LONG_REPLY and result.status == "ok"
    assert result.usage.completion_tokens == 500 and not result.usage.estimated
    assert elapsed < 3.0, f"500 events took {elapsed:.1f} s"


async def test_paced_tokens_reach_the_consumer_one_by_one() -> None:
    """Tokens sent 40 ms apart are each yielded as they come, not gathered into batches."""
    with serve("one two three four five six", tokens_per_s=25) as server:
        register(server)
        arrivals: list[float] = []
        async for event in nbllm.astream("count"):
            if isinstance(event, nbllm.TokenEvent):
                arrivals.append(time.perf_counter())
    assert len(arrivals) == 6
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) > 0.01  # each came on its own, paced by the server


def test_sequential_calls_reuse_one_connection(fast: LoopbackServer) -> None:
    for _ in range(20):
        assert nbllm.chat("again", max_tokens=5).status == "ok"
    assert fast.connections == 1


def test_concurrent_calls_each_get_a_connection_then_reuse_them() -> None:
    async def burst() -> list[str]:
        results = await asyncio.gather(*(nbllm.achat(f"call {i}") for i in range(16)))
        again = await asyncio.gather(*(nbllm.achat(f"again {i}") for i in range(16)))
        return [r.status for r in (*results, *again)]

    with serve("a reply of six tokens here", tokens_per_s=50) as server:  # 120 ms: all 16 overlap
        register(server)
        statuses = asyncio.run(burst())
    assert statuses == ["ok"] * 32
    assert server.connections == 16


async def test_a_cancelled_stream_does_not_go_back_to_the_pool() -> None:
    with serve(LONG_REPLY, tokens_per_s=200) as server:
        register(server)
        stream = nbllm.astream("start")
        async for event in stream:
            if isinstance(event, nbllm.TokenEvent):
                break
        await stream.aclose()  # the consumer walked away mid-reply
        result = await nbllm.achat("next")
        assert result.text == LONG_REPLY
        for _ in range(50):  # the server notices the hang-up within its next pause
            if server.disconnects:
                break
            await asyncio.sleep(0.02)
        assert len(server.disconnects) == 1 and server.connections == 2
    assert nbllm.history()[-2].status == "cancelled"


async def test_a_changed_provider_gets_a_new_client_and_the_old_one_closes(fast: LoopbackServer) -> None:
    await nbllm.achat("first", max_tokens=5)
    (first,) = [e.client for e in (await pool._clients_of_running_loop()).entries.values()]
    nbllm.get_store().update_provider("s", read_timeout_s=30.0)
    await nbllm.achat("second", max_tokens=5)
    (second,) = [e.client for e in (await pool._clients_of_running_loop()).entries.values()]
    assert second is not first and first.is_closed and not second.is_closed
    assert fast.connections == 2


def test_clients_close_when_their_event_loop_ends(fast: LoopbackServer) -> None:
    clients: list[Any] = []

    async def call() -> None:
        await nbllm.achat("hi", max_tokens=5)
        clients.extend(e.client for e in (await pool._clients_of_running_loop()).entries.values())

    asyncio.run(call())
    assert len(clients) == 1 and clients[0].is_closed
    assert all(not loop.is_closed() for loop in pool._POOLS)  # the ended loop's entry is gone


def test_a_reply_dropped_by_a_uvicorn_server_names_llama_cpp_pythons_interrupts() -> None:
    """llama-cpp-python's server (uvicorn) drops a reply when another request arrives, unless
    started with --interrupt_requests False; the hint says so only for such a server."""
    from nbllm._calls.errors import dropped_hint
    from nbllm._calls.reply_state import ReplyState

    assert "--interrupt_requests False" in dropped_hint(ReplyState(server="uvicorn"))
    assert "--interrupt_requests" not in dropped_hint(ReplyState(server="nginx"))
    assert "--interrupt_requests" not in dropped_hint(ReplyState())
