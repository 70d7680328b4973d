"""Which wire protocol a call speaks: the provider's ``api`` (see `nbllm._constants.APIS`).
Everything above the protocols (retries, fallbacks, history, rendering, conversations, tools)
is the same for all of them, so a fallback chain may cross protocols.

``auto`` asks OpenAI's Responses API first. An endpoint that answers 404, 405 or 501 there has
none: the call goes on with Chat Completions, and so does every later call to that provider in
this session (`learn_no_responses`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import ModuleType

import httpx

from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent
from nbllm._calls.wire import anthropic, chat_completions, responses
from nbllm._providers.config import ProviderConfig
from nbllm._providers.resolved import Resolved

Reader = Callable[[httpx.Response, Resolved, ReplyState], AsyncIterator[TokenEvent | ReasoningEvent]]

NO_RESPONSES_STATUSES = frozenset({404, 405, 501})
"""What an endpoint without ``/responses`` answers there."""

_without_responses: set[tuple[str, str]] = set()
"""(provider name, url) of ``auto`` providers found to have no Responses API this session."""


def _key(provider: ProviderConfig) -> tuple[str, str]:
    return provider.name, provider.url


def _protocol(provider: ProviderConfig) -> ModuleType:
    if provider.api == "anthropic":
        return anthropic
    if provider.api == "responses" or (provider.api == "auto" and _key(provider) not in _without_responses):
        return responses
    return chat_completions


def tries_responses(provider: ProviderConfig) -> bool:
    """Whether the next call to an ``auto`` provider asks the Responses API (and may learn it has none)."""
    return provider.api == "auto" and _key(provider) not in _without_responses


def learn_no_responses(provider: ProviderConfig) -> None:
    """Remember for the session that this ``auto`` provider has no Responses API."""
    _without_responses.add(_key(provider))


def forget_learned() -> None:
    """Forget what ``auto`` learned (tests start each from a clean session)."""
    _without_responses.clear()


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and body one attempt sends, in the provider's protocol."""
    prepared: PreparedRequest = _protocol(resolved.provider).prepare(resolved, request)
    return prepared


def reader(resolved: Resolved, *, stream: bool) -> Reader:
    """What reads the reply: the protocol's stream reader or whole-reply reader."""
    protocol = _protocol(resolved.provider)
    read: Reader = protocol.read_stream if stream else protocol.read_whole
    return read
