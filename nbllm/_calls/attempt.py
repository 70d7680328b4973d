"""The one attempt engine: every request nbllm sends (a chat round, an embeddings batch) goes
through `AttemptLoop` at one route: wait for the provider's pacing, prepare the request, lease
a pooled client, exchange, read, check the reply, and on failure decide (retry, after how long,
or give up), filling one `AttemptRecord` per attempt in one place.

What differs between kinds of call is an `Exchange`: how to prepare the request, how to read
the reply, what a good reply must satisfy, and what a failure teaches. The loop's one edge
turns whatever is raised under it into an nbllm error (`nbllm._calls.edge`); a final failure
leaves as that error, and whether to fall back to another route is the caller's decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import httpx

from nbllm._calls.client import exchange
from nbllm._calls.edge import translate
from nbllm._calls.history import AttemptRecord, History
from nbllm._calls.pacing import Booking, book_request, in_flight, pacer_for
from nbllm._calls.pool import lease
from nbllm._calls.protocol_choice import WireProtocol
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import PreparedRequest
from nbllm._calls.results import ChatEvent, StatusEvent
from nbllm._calls.retry import is_fallback_status, is_retryable_status, retry_decision
from nbllm._exceptions import (
    APIError,
    BadRequestError,
    IncompleteStreamError,
    RateLimitError,
    StatusError,
    ThinkingBudgetError,
    TransportError,
)
from nbllm._providers.config import ProviderConfig
from nbllm._providers.resolved import Resolved
from nbllm._providers.urls import host_of

Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class CallOptions:
    """How to run a call, apart from what to ask (`ChatRequest`) and whom (the routes)."""

    history: History | None = None
    sleep: Sleep = asyncio.sleep
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class Outgoing:
    """One attempt's request, and the wire protocol that built it and reads its reply (decided
    once, when it is prepared; None for a kind of call with a single format)."""

    request: PreparedRequest
    protocol: WireProtocol | None = None


@dataclass(frozen=True)
class Again:
    """Ask again at once, differently, without spending one of the retry policy's attempts:
    `status` tells the consumer why; `outcome` and `note` go into the attempt's record."""

    status: StatusEvent
    outcome: str
    note: str


class Exchange(Protocol):
    """What one kind of call does inside an attempt (chat: `nbllm._calls.call`; embeddings:
    `nbllm._calls.embed`)."""

    def prepare(self, resolved: Resolved) -> Outgoing:
        """The request the next attempt sends."""
        ...

    def read(
        self, response: httpx.Response, outgoing: Outgoing, state: ReplyState
    ) -> AsyncIterator[ChatEvent]:
        """Read the 2xx reply, yielding what the consumer should see as it arrives."""
        ...

    def check(self, outgoing: Outgoing, state: ReplyState) -> Again | None:
        """After the reply was read: raise if it is not a success, or ask `Again`."""
        ...

    def learn(self, error: APIError, outgoing: Outgoing, state: ReplyState) -> Again | None:
        """After a failed attempt: whether the failure teaches a different way to ask."""
        ...


def retryable(error: APIError, state: ReplyState) -> bool:
    """Whether sending the same request again could end differently."""
    if isinstance(error, ThinkingBudgetError | BadRequestError):  # the same request would fail the same
        return False  # (also a server's 500 that nbllm knows is a refused request)
    if isinstance(error, StatusError):
        return error.status is not None and is_retryable_status(error.status)
    if isinstance(error, IncompleteStreamError):
        return not state.shown
    return isinstance(error, TransportError)


def fallback_worthy(error: APIError, state: ReplyState) -> bool:
    """Whether another route might succeed where this one failed for good."""
    if state.shown:
        return False
    if isinstance(error, StatusError):
        return error.status is not None and is_fallback_status(error.status)
    return retryable(error, state)


async def wait_for_pacing(
    provider: ProviderConfig, sleep: Sleep, tokens: Callable[[], int] | None = None
) -> Booking:
    """Wait until every limit on the provider lets one more request go: its --rps, a batch
    run's rpm and tpm, a 429's pause (see `nbllm._calls.pacing`); shared with every other
    call to it. `tokens` estimates the request's size for a tpm budget."""
    booking = book_request(provider.name, provider.requests_per_second, tokens)
    if booking.wait_s > 0:
        await sleep(booking.wait_s)
    return booking


class AttemptLoop:
    """Attempts at one route until one succeeds or a failure is final. `state` is the latest
    attempt's `ReplyState`, `booking` its pacing booking; every attempt is appended to
    `attempts`."""

    def __init__(
        self,
        kind: Exchange,
        resolved: Resolved,
        options: CallOptions,
        attempts: list[AttemptRecord],
        size: Callable[[], int] | None = None,
    ) -> None:
        self.kind, self.resolved, self.options = kind, resolved, options
        self.attempts = attempts
        self.size = size
        self.state = ReplyState()
        self.booking: Booking | None = None

    async def run(self) -> AsyncIterator[ChatEvent]:
        """Yield what the consumer sees (tokens, and a `StatusEvent` before each new attempt);
        return after a good reply, raise its nbllm error after a final failure."""
        provider, resolved = self.resolved.provider, self.resolved
        policy = provider.retry
        attempt = 0
        while True:
            attempt += 1
            self.booking = await wait_for_pacing(provider, self.options.sleep, self.size)
            outgoing = self.kind.prepare(resolved)
            self.state = state = ReplyState()
            tried = AttemptRecord(
                resolved.qualified_name, host_of(outgoing.request.url), datetime.now(timezone.utc)
            )
            self.attempts.append(tried)
            again: Again | None = None
            try:
                async with (
                    in_flight(provider.name) as slot,
                    lease(provider, self.options.transport) as client,
                    exchange(client, resolved, outgoing.request, state) as response,
                ):
                    async for event in self.kind.read(response, outgoing, state):
                        yield event
                state.crowded = slot.crowded
                again = self.kind.check(outgoing, state)
            except Exception as exc:  # the edge: whatever was raised under it is an nbllm error now
                error = translate(exc, resolved, outgoing.request.secrets)
                if not isinstance(error, APIError):  # e.g. a key that went missing: not the server's doing
                    _close(tried, state, type(error).__name__, error.message)
                    raise error from error.__cause__
                _close(tried, state, type(error).__name__, error.message, error.status)
                again = self.kind.learn(error, outgoing, state)
                if again is None:
                    wait_s = self._retry_wait(error, attempt)
                    if wait_s is None:
                        raise error from error.__cause__
                    limited = isinstance(error, RateLimitError)
                    what = "rate limited" if limited else type(error).__name__
                    of = policy.max_retries + 1
                    yield StatusEvent(
                        "rate_limited" if limited else "retry",
                        f"{what}, retrying in {wait_s:.1f} s, attempt {attempt + 1} of {of}",
                        wait_s,
                        attempt + 1,
                        of,
                    )
                    if limited:  # the whole provider waits, not only this call: no storm of retries
                        pacer_for(provider.name).hold(wait_s)
                    await self.options.sleep(wait_s)
                    continue
            except BaseException:  # cancelled or interrupted: the attempt did not end well either
                _close(tried, state, "cancelled", None)
                raise
            if again is None:
                _close(tried, state, "ok", None)
                if state.keep is not None:
                    state.keep()  # only now may the response cache keep it
                return
            if tried.outcome == "unfinished":  # asked again after a reply that read well
                _close(tried, state, again.outcome, again.note)
            attempt -= 1  # not one of the retry policy's attempts
            yield again.status

    def _retry_wait(self, error: APIError, attempt: int) -> float | None:
        """Seconds to wait before the same request goes again; None when the failure is final."""
        if self.state.shown or not retryable(error, self.state):
            return None
        policy = self.resolved.provider.retry
        asked = error.retry_after_s if isinstance(error, RateLimitError) else None
        decision = retry_decision(attempt, policy, asked)
        if decision.retry:
            return decision.wait_s
        if asked is not None and asked > policy.retry_after_ceiling_s:
            error.message += (
                f" (the server asks to wait {asked:.0f} s; nbllm waits at most "
                f"{policy.retry_after_ceiling_s:.0f} s)"
            )
        return None


def _close(
    tried: AttemptRecord, state: ReplyState, outcome: str, message: str | None, status: int | None = None
) -> None:
    """Fill in how an attempt ended (the one place that does)."""
    tried.latency_s = time.perf_counter() - state.started
    tried.http_status = status or state.http_status
    tried.outcome = outcome
    tried.error = message[:200] if message is not None else None
