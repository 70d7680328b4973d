"""Reading a server-sent event stream, whatever the protocol: each network read's events are
taken at once by the protocol's `Take` (which applies them to the `ReplyState` and returns their
thinking and text), and the reply ends at the protocol's end marker or finish, with a short
grace for what follows the finish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from nbllm._calls.errors import SHAPE_ERRORS, clip, protocol_error
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.results import ReasoningEvent, TokenEvent
from nbllm._calls.sse import ServerSentEvent, SSEDecoder
from nbllm._constants import AFTER_FINISH_GRACE_S
from nbllm._exceptions import APIError
from nbllm._providers.resolved import Resolved

_timeout = getattr(asyncio, "timeout", None)

Take = Callable[[list[ServerSentEvent], Resolved, ReplyState], tuple[str, str]]
"""A protocol's reading of one network read's events: (thinking, text)."""


async def read_events(
    response: httpx.Response, resolved: Resolved, state: ReplyState, take: Take
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    """Decode the stream as its bytes arrive. The text of every event in one network read goes
    out as one `TokenEvent` (a consumer's per-event cost is then paid per read, not per token),
    its thinking as one `ReasoningEvent` before it, and nothing waits between reads: how often
    the screen changes is the renderer's business.

    The reply is complete at ``[DONE]``: nothing after it is interpreted. After the finish
    reason, the rest (the usage chunk, ``[DONE]``, the body's end) may take at most
    `AFTER_FINISH_GRACE_S` in all; a server that then stalls or drops the connection has
    still given a whole reply."""
    decoder = SSEDecoder()
    chunks = response.aiter_bytes()
    async for chunk in chunks:
        thinking, text = take(decoder.feed(chunk), resolved, state)
        if thinking:
            yield ReasoningEvent(thinking)
        if text:
            yield TokenEvent(text)
        if state.complete:
            break
    else:
        decoder.close()
        for event in _held_tags(state):
            yield event
        return
    tail: list[str] = []  # text after the finish reason (rare), kept even if the tail times out
    with contextlib.suppress(asyncio.TimeoutError, httpx.TransportError, httpx.DecodingError):
        # One deadline for the whole tail. asyncio.timeout (3.11) costs a timer; wait_for, the
        # 3.10 fallback, a task, which shows in the time of small calls.
        reading = _read_tail(chunks, decoder, resolved, state, tail, take)
        if _timeout is None:
            await asyncio.wait_for(reading, AFTER_FINISH_GRACE_S)
        else:
            async with _timeout(AFTER_FINISH_GRACE_S):
                await reading
    if tail:
        yield TokenEvent("".join(tail))
    for event in _held_tags(state):
        yield event


def _held_tags(state: ReplyState) -> list[TokenEvent | ReasoningEvent]:
    """At the reply's end: what the ``<think>`` splitter still held (an unclosed thought, or a
    reply that was only the start of a tag)."""
    if state.think_tags is None:
        return []
    thinking, text = state.think_tags.close()
    state.think_tags = None
    events: list[TokenEvent | ReasoningEvent] = []
    now = time.perf_counter()
    if thinking:
        state.thought(thinking, now)
        events.append(ReasoningEvent(thinking))
    if text:
        state.answered(now)
        state.pieces.append(text)
        events.append(TokenEvent(text))
    return events


async def _read_tail(
    chunks: AsyncIterator[bytes],
    decoder: SSEDecoder,
    resolved: Resolved,
    state: ReplyState,
    tail: list[str],
    take: Take,
) -> None:
    """After the finish reason: the usage chunk and ``[DONE]``, then the body's end (usually in
    hand already), read so the connection can be reused."""
    async for chunk in chunks:
        if not state.saw_done:
            _, text = take(decoder.feed(chunk), resolved, state)
            if text:
                tail.append(text)


def whole_events(state: ReplyState, thinking: str, text: str) -> list[TokenEvent | ReasoningEvent]:
    """A whole (unstreamed) reply's thinking and text, applied to `state`, as the events a
    stream would have given."""
    events: list[TokenEvent | ReasoningEvent] = []
    if thinking:  # not timed: a whole reply says nothing of how long the model thought
        state.thoughts.append(thinking)
        events.append(ReasoningEvent(thinking))
    if text or state.tools.calls():
        state.answered(time.perf_counter())
    if text:
        state.pieces.append(text)
        events.append(TokenEvent(text))
    return events


Apply = Callable[[str, dict[str, Any], Resolved, ReplyState, list[str], list[str]], bool]
"""A typed-event protocol's reading of one event: its kind, its JSON, where its text and
thinking go; True when the reply is complete."""


def typed_take(apply: Apply) -> Take:
    """The `Take` of a protocol whose events say their type (Anthropic Messages, OpenAI
    Responses): each event's JSON goes to `apply`; what came before a bad event is kept in
    `state` (and shown by the caller's error) before the error is raised."""

    def take(events: list[ServerSentEvent], resolved: Resolved, state: ReplyState) -> tuple[str, str]:
        pieces: list[str] = []
        thoughts: list[str] = []
        data = ""
        try:
            for event in events:
                data = event.data
                if not data or data == "[DONE]":
                    continue
                state.events += 1
                payload = json.loads(data)
                if apply(str(payload.get("type") or event.event), payload, resolved, state, pieces, thoughts):
                    break
        except SHAPE_ERRORS as exc:
            state.pieces.extend(pieces)
            if isinstance(exc, (json.JSONDecodeError, RecursionError)):
                what = f"sent an event that is not JSON: {clip(data, 120)!r}"
                raise protocol_error(resolved, state, what, not_json=True) from None
            raise protocol_error(resolved, state, f"sent an event nbllm cannot read ({exc})") from exc
        except APIError:
            state.pieces.extend(pieces)
            raise
        thinking = "".join(thoughts)
        if thinking:
            state.thought(thinking, time.perf_counter())
        text = "".join(pieces)
        if text:
            state.pieces.append(text)
        return thinking, text

    return take
