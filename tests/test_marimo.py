"""`nbllm.marimo.chat_model` called as marimo's ``mo.ui.chat`` calls a model (issue 33): with
marimo's own message and config types, streaming deltas through an async generator, against
the loopback server."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

import nbllm
import nbllm.marimo
from nbllm.testing import LoopbackServer, serve

marimo = pytest.importorskip("marimo")
ChatMessage, ChatModelConfig = marimo.ai.ChatMessage, marimo.ai.ChatModelConfig  # its public names

REPLY = "Paris is the capital of France."


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve(reply=REPLY, tokens_per_s=500) as running:
        nbllm.get_store().add_provider(nbllm.ProviderConfig(name="loop", url=running.base_url, models=["m"]))
        yield running


async def collect(response: object) -> list[str]:
    assert inspect.isasyncgen(response)  # what marimo checks to stream a reply
    return [piece async for piece in response]  # type: ignore[attr-defined]


def test_the_reply_streams_as_deltas_marimo_accumulates(server: LoopbackServer) -> None:
    model = nbllm.marimo.chat_model("loop/m")
    messages = [
        ChatMessage(role="user", content="What is the capital of France?"),
        ChatMessage(role="assistant", content="Let me see."),
        ChatMessage(role="user", content="Well?"),
    ]
    pieces = asyncio.run(collect(model(messages, ChatModelConfig(max_tokens=64, temperature=0.2))))
    assert len(pieces) > 3 and "".join(pieces) == REPLY  # deltas: marimo joins them
    sent = server.requests[-1].body
    assert [m["content"] for m in sent["messages"]] == [
        "What is the capital of France?",
        "Let me see.",
        "Well?",
    ]
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.2
    assert nbllm.history()[-1].status == "ok"  # the same engine and record as every call


def test_options_given_here_win_over_marimos_settings(server: LoopbackServer) -> None:
    model = nbllm.marimo.chat_model("loop/m", max_tokens=12)
    asyncio.run(collect(model([ChatMessage(role="user", content="hi")], ChatModelConfig(max_tokens=999))))
    assert server.requests[-1].body["max_tokens"] == 12


def test_a_failure_is_an_nbllm_error_for_marimo_to_show(server: LoopbackServer) -> None:
    model = nbllm.marimo.chat_model("loop/no-such-model")
    with pytest.raises(nbllm.NbllmError):
        asyncio.run(collect(model([ChatMessage(role="user", content="hi")], ChatModelConfig())))


def test_marimo_chat_takes_the_function(server: LoopbackServer) -> None:
    chat = marimo.ui.chat(nbllm.marimo.chat_model("loop/m"))
    assert chat is not None
