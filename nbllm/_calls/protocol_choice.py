"""Which wire protocol a call speaks, decided once per attempt: the provider's ``api`` (see
`nbllm._constants.APIS`) and what the session learned. The choice is a `WireProtocol` that
travels with the attempt: the same object prepares the request and reads its reply, so a
concurrent call learning something meanwhile cannot pair one protocol's request with
another's reader. Everything above the protocols (retries, fallbacks, history, rendering,
conversations, tools) is the same for all of them, so a fallback chain may cross protocols.

``auto`` asks OpenAI's Responses API first. An endpoint that answers 404, 405 or 501 there has
none: the attempt goes on with Chat Completions, and so does every later call to that
provider in this session (`learn_no_responses`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import ModuleType

import httpx

from nbllm._calls.learned import learned
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent
from nbllm._calls.wire import anthropic, chat_completions, responses
from nbllm._providers.config import ProviderConfig
from nbllm._providers.resolved import Resolved

Reader = Callable[[httpx.Response, Resolved, ReplyState], AsyncIterator[TokenEvent | ReasoningEvent]]

NO_RESPONSES_STATUSES = frozenset({404, 405, 501})
"""What an endpoint without ``/responses`` answers there."""


@dataclass(frozen=True)
class WireProtocol:
    """One wire format: how to build its request and read its reply (streamed or whole)."""

    name: str
    wire: ModuleType
    """The `nbllm._calls.wire` module that speaks it (its functions are looked up per use)."""
    probing: bool = False
    """An ``auto`` provider's first try at the Responses API: a 404/405/501 means "none here"."""

    def prepare(self, resolved: Resolved, request: ChatRequest) -> PreparedRequest:
        """The exact URL, headers and body one attempt sends."""
        prepared: PreparedRequest = self.wire.prepare(resolved, request)
        return prepared

    def reader(self, *, stream: bool) -> Reader:
        """What reads the reply: the protocol's stream reader or whole-reply reader."""
        read: Reader = self.wire.read_stream if stream else self.wire.read_whole
        return read


CHAT_COMPLETIONS = WireProtocol("chat", chat_completions)
RESPONSES = WireProtocol("responses", responses)
RESPONSES_PROBE = WireProtocol("responses", responses, probing=True)
ANTHROPIC = WireProtocol("anthropic", anthropic)


def _key(provider: ProviderConfig) -> tuple[str, str]:
    return provider.name, provider.url


def choose_protocol(provider: ProviderConfig) -> WireProtocol:
    """The protocol the next attempt to `provider` speaks."""
    if provider.api == "anthropic":
        return ANTHROPIC
    if provider.api == "responses":
        return RESPONSES
    if provider.api == "auto" and _key(provider) not in learned().without_responses:
        return RESPONSES_PROBE
    return CHAT_COMPLETIONS


def learn_no_responses(provider: ProviderConfig) -> None:
    """Remember for the session that this ``auto`` provider has no Responses API."""
    learned().without_responses.add(_key(provider))


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The request the next attempt would send (for the dry run and tests)."""
    return choose_protocol(resolved.provider).prepare(resolved, request)
