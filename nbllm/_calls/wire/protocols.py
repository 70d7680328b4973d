"""The wire protocols: how a request is written and a reply read, one module per protocol
(`chat_completions`, `anthropic`). Everything above (retries, fallbacks, history, rendering,
conversations, tools) is the same for all of them, so a fallback chain may cross protocols.
`prepare` and `reader` pick the provider's protocol (its ``api``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from nbllm._calls.reply import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent
from nbllm._calls.wire import anthropic, chat_completions
from nbllm._providers.resolved import Resolved

Reader = Callable[[httpx.Response, Resolved, ReplyState], AsyncIterator[TokenEvent | ReasoningEvent]]


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and body one attempt sends, in the provider's protocol."""
    if resolved.provider.api == "anthropic":
        return anthropic.prepare(resolved, request)
    return chat_completions.prepare(resolved, request)


def reader(resolved: Resolved, *, stream: bool) -> Reader:
    """What reads the reply: the protocol's stream reader or whole-reply reader."""
    if resolved.provider.api == "anthropic":
        return anthropic.read_stream if stream else anthropic.read_whole
    return chat_completions.read_stream if stream else chat_completions.read_whole
