"""Servers that drop a reply in progress when another request arrives (issue 29, item 9), as
llama-cpp-python's server does with its defaults: against a standard-library server that behaves
so (`tests/hostile_server.py`); the real server is a conformance row."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from typing import Any

import pytest

import nbllm
from nbllm import ProviderConfig
from nbllm._calls.pacing import pacer_for
from tests.hostile_server import Reply, chat_events, hostile

SSE = "text/event-stream"
ROLE_ONLY = json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
GENERATING_S = 0.05


class Interrupting:
    """Serves one request at a time; the one being served ends at once, with its role chunk and
    ``[DONE]``, when a newer request is waiting, as llama-cpp-python's ``--interrupt_requests
    True`` does."""

    def __init__(self) -> None:
        self.serving = threading.Lock()
        self.lock = threading.Lock()
        self.arrivals = 0
        self.dropped = 0

    def __call__(self, path: str, headers: dict[str, str], body: Any) -> Reply:
        with self.lock:
            self.arrivals += 1
            mine = self.arrivals
        with self.serving:
            deadline = time.monotonic() + GENERATING_S
            while time.monotonic() < deadline:
                if self.arrivals != mine:  # a newer request waits
                    with self.lock:
                        self.dropped += 1
                    return 200, SSE, [ROLE_ONLY, "[DONE]"]
                time.sleep(0.002)
        return 200, SSE, chat_events(f"reply to {body['messages'][-1]['content']}")


def add(server: Any) -> None:
    nbllm.get_store().add_provider(
        ProviderConfig(name="lcp", url=server.base_url, auth="none", models=["m"], retry={"max_retries": 0})
    )


async def sixteen_at_once() -> list[nbllm.ChatResult]:
    return list(await asyncio.gather(*(nbllm.achat(f"n{n}", "lcp/m") for n in range(16))))


def test_sixteen_calls_at_once_all_succeed_and_the_provider_is_learned() -> None:
    server_state = Interrupting()
    with hostile(server_state) as server, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        add(server)
        results = asyncio.run(sixteen_at_once())
        later = nbllm.chat("later", "lcp/m")  # one at a time from now on: nothing to drop
    assert later.text == "reply to later"
    assert [r.text for r in results] == [f"reply to n{n}" for n in range(16)]
    assert server_state.dropped >= 1  # the burst really was dropped in part
    assert len(server.seen) == 16 + server_state.dropped + 1
    told = [str(w.message) for w in said if "one request at a time" in str(w.message)]
    assert len(told) == 1 and "--interrupt_requests False" in told[0]
    assert pacer_for("lcp").one_at_a_time
    records = nbllm.history()[:16]
    assert [r.status for r in records] == ["ok"] * 16
    outcomes = [a.error for r in records for a in r.attempts if a.outcome != "ok"]
    assert outcomes == ["dropped for another request"] * server_state.dropped
    assert all(len(r.attempts) <= 2 for r in records)  # each asked again once, alone


def test_a_reply_dropped_part_way_is_an_incomplete_stream_naming_the_flag() -> None:
    second_arrived = threading.Event()

    def answer(path: str, headers: dict[str, str], body: Any) -> Reply:
        if body["messages"][-1]["content"] == "first":
            second_arrived.wait(5)
            return 200, SSE, chat_events("the first half of", finish=None)
        second_arrived.set()
        time.sleep(0.2)  # generating, while the first reply ends
        return 200, SSE, chat_events("second answer")

    async def both() -> list[Any]:
        first = asyncio.ensure_future(nbllm.achat("first", "lcp/m"))
        await asyncio.sleep(0.05)
        return list(await asyncio.gather(first, nbllm.achat("second", "lcp/m"), return_exceptions=True))

    with hostile(answer) as server, warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        add(server)
        first, second = asyncio.run(both())
    assert isinstance(first, nbllm.IncompleteStreamError), first
    assert "--interrupt_requests False" in (first.hint or "") and "dropped" in first.message
    assert isinstance(second, nbllm.ChatResult) and second.text == "second answer"
    assert len(server.seen) == 2  # part of the first reply had arrived: it is not asked again


def test_a_reply_that_is_empty_alone_too_is_an_empty_reply_after_one_more_try() -> None:
    with hostile(lambda *_: (200, SSE, [ROLE_ONLY, "[DONE]"])) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        add(server)

        async def two() -> list[Any]:
            calls = (nbllm.achat(f"q{n}", "lcp/m") for n in range(2))
            return list(await asyncio.gather(*calls, return_exceptions=True))

        outcomes = asyncio.run(two())
    assert all(isinstance(o, nbllm.EmptyReplyError) for o in outcomes), outcomes
    assert len(server.seen) <= 4  # at most one more try each, never a loop


def test_a_server_that_serves_calls_at_once_is_not_held_to_one() -> None:
    with hostile(lambda path, headers, body: (200, SSE, chat_events("fine"))) as server:
        add(server)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no notice either
            results = asyncio.run(sixteen_at_once())
    assert all(r.text == "fine" for r in results) and len(server.seen) == 16
    assert not pacer_for("lcp").one_at_a_time


@pytest.mark.parametrize("finish", ["stop", None])
def test_a_reply_alone_is_taken_as_it_is(finish: str | None) -> None:
    """No other request in flight: a reply without a finish reason is not suspected of anything."""
    with hostile(lambda *_: (200, SSE, chat_events("just this", finish=finish))) as server:
        add(server)
        assert nbllm.chat("q", "lcp/m").text == "just this"
    assert len(server.seen) == 1 and not pacer_for("lcp").one_at_a_time
