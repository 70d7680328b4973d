"""A whole chat call: its routes (the model, then its fallbacks), the result and its history
record. Each route's attempts run in the one attempt engine (`nbllm._calls.attempt`);
`_ChatExchange` is what a chat round does inside it (the protocol chosen per attempt, the
reply read as events, the checks a success must pass). `stream_call` is the call's own event
generator; `nbllm.chat`, `achat` and `astream` (`nbllm._api`) are built on it. A call is
retried only while nothing has reached the consumer; after that a failure keeps the partial
text (on the raised error's `result`) and is recorded as it ended.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import httpx

from nbllm._calls.attempt import Again, AttemptLoop, CallOptions, Outgoing, fallback_worthy
from nbllm._calls.budget import get_budget
from nbllm._calls.client import read_reply
from nbllm._calls.context_fit import check_fits
from nbllm._calls.edge import translate
from nbllm._calls.errors import protocol_error
from nbllm._calls.history import AttemptRecord, CallRecord, Transcript, get_history, set_last
from nbllm._calls.interrupted import SERVER_FLAG, ask_again_alone, dropped_for_another
from nbllm._calls.loop_thread import loop_thread
from nbllm._calls.pacing import Booking
from nbllm._calls.protocol_choice import NO_RESPONSES_STATUSES, choose_protocol, learn_no_responses
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import ChatRequest, PreparedRequest
from nbllm._calls.results import (
    ChatEvent,
    ChatResult,
    DoneEvent,
    StatusEvent,
    ToolCallEvent,
    estimated_usage,
)
from nbllm._calls.tokens import default_counter
from nbllm._constants import CONTEXT_SUSPECT_FRACTION, TYPICAL_REPLY_TOKENS
from nbllm._exceptions import (
    APIError,
    ContextTooLongError,
    EmptyReplyError,
    IncompleteStreamError,
    ProtocolError,
    ThinkingBudgetError,
    ToolChoiceIgnoredError,
)
from nbllm._providers.resolved import Resolved
from nbllm._providers.urls import host_of


def to_messages(prompt: str | Sequence[dict[str, Any]], system: str | None = None) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system is not None:
        messages = [m for m in messages if m.get("role") != "system"]
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _incomplete_hint(state: ReplyState) -> str:
    if state.events == 0:
        # llama-cpp-python answers a prompt longer than its context window with an empty stream.
        return (
            "the server sent an empty stream; some servers (llama-cpp-python) do that when the prompt "
            "does not fit the model's context window. Shorten the prompt, or ask with --no-stream "
            "(stream=False) to see the server's own error"
        )
    return "the server or a proxy cut the reply short; the text shown is partial"


def _streamed_nothing_for_tools(prepared: PreparedRequest, state: ReplyState) -> bool:
    """A streamed request that offered tools with an automatic choice got no text and no call."""
    body = prepared.body
    return (
        bool(body.get("stream"))
        and bool(body.get("tools"))
        and body.get("tool_choice", "auto") == "auto"
        and not state.pieces
        and not state.tools.calls()
    )


def _thought(state: ReplyState) -> bool:
    """Whether the reply spent tokens thinking (as text, or counted by the server)."""
    return bool(state.thoughts) or bool(state.reasoning_tokens)


def _tool_call_required(request: ChatRequest) -> bool:
    return bool(request.tools) and request.tool_choice not in (None, "auto", "none")


def _json_reply(resolved: Resolved, state: ReplyState) -> Any:
    """The reply of a JSON-mode call, decoded (a Markdown code fence around it is tolerated)."""
    text = state.text.strip()
    if text.startswith("```"):
        text = text.partition("\n")[2].rsplit("```", 1)[0]
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        if state.finish_reason == "length":
            raise IncompleteStreamError(
                f"{resolved.qualified_name}'s JSON reply was cut off at the token limit",
                hint="raise --max-tokens (max_tokens=); the text so far is in nbllm.last().text",
                request_id=state.request_id,
            ) from None
        raise ProtocolError(
            f"{resolved.qualified_name}'s reply is not valid JSON ({exc}) although JSON mode was asked for",
            hint="the model may not follow JSON mode; its text is in nbllm.last().text",
            request_id=state.request_id,
        ) from None


class _Call:
    """The state of one call across its routes and attempts."""

    def __init__(self, request: ChatRequest, routes: Sequence[Resolved], options: CallOptions) -> None:
        if not routes:
            raise ValueError("a call needs at least one route (see plan_routes)")
        self.request = request
        self.options = options
        self.history = options.history or get_history()
        self.routes = list(routes)
        primary = self.routes[0]
        self.started = time.perf_counter()
        self.started_at = datetime.now(timezone.utc)
        self.attempts: list[AttemptRecord] = []
        self.error_class: str | None = None
        # Not ok until earned: the protocol's end seen and every check passed (see `events`).
        self.result = ChatResult(model=primary.qualified_name, status="error")
        self.state = ReplyState()
        self.done = False
        self.recorded = False
        self.booking: Booking | None = None
        self.protocol: str | None = None
        """The wire protocol of the last attempt (chat, responses or anthropic)."""

    async def events(self) -> AsyncGenerator[ChatEvent, None]:
        try:
            for index, resolved in enumerate(self.routes):
                if index > 0:
                    previous = self.routes[index - 1].qualified_name
                    self.result.fallbacks.append(previous)
                    yield StatusEvent(
                        "fallback", f"{previous} failed; falling back to {resolved.qualified_name}"
                    )
                self.result.model = resolved.qualified_name
                # The engine's events come straight through (no generator per route between):
                # every layer an event passes costs on each token.
                get_budget().check(self.request, resolved)  # before anything is sent to it
                await check_fits(self.request, resolved, self.options.transport)
                loop = AttemptLoop(
                    _ChatExchange(self, resolved), resolved, self.options, self.attempts, self._size
                )
                try:
                    async for event in loop.run():
                        if isinstance(event, StatusEvent):
                            self.result.retries += 1  # each status the loop yields precedes an attempt
                        yield event
                except APIError as failed:
                    if index < len(self.routes) - 1 and fallback_worthy(failed, loop.state):
                        continue  # the next route
                    raise
                finally:
                    self.state, self.booking = loop.state, loop.booking
                self.result.finish_reason = loop.state.finish_reason
                self._finish()
                self.result.status = "ok"
                self.done = True  # a consumer that stops after DoneEvent has not cancelled anything
                self._record()  # now, not when the generator is collected: the caller may read it at once
                for call in self.result.tool_calls:
                    yield ToolCallEvent(call)
                yield DoneEvent(self.result)
                return
        except Exception as exc:  # the engine's one edge: nothing foreign leaves it
            error = translate(exc, self.routes[len(self.result.fallbacks)])
            self._finish()
            incomplete = isinstance(error, IncompleteStreamError)
            self.result.status = "incomplete" if incomplete else "error"
            self.result.error = str(error).split("\n")[0]
            self.error_class = type(error).__name__
            if isinstance(error, APIError):
                self.result.request_id = error.request_id or self.result.request_id
                error.result = self.result
            raise error from error.__cause__
        except (asyncio.CancelledError, GeneratorExit):
            if not self.done:
                self._finish()
                self.result.status = "cancelled"
            raise
        finally:
            self._record()

    def _record(self) -> None:
        if not self.recorded:
            self.recorded = True
            set_last(self.result)
            answered = self.routes[len(self.result.fallbacks)]
            record = CallRecord.from_result(
                self.result,
                requested=self.routes[0].qualified_name,
                host=host_of(answered.provider.url),
                started_at=self.started_at,
                attempts=self.attempts,
                error_class=self.error_class,
            )
            if self.history.keep_transcripts:
                record.transcript = Transcript(
                    list(self.request.messages),
                    self.result.text,
                    self.result.reasoning,
                    [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.result.tool_calls],
                    protocol=self.protocol,
                )
            self.history.add(record)

    def _size(self) -> int:
        """About how many tokens the request spends, for a tokens-per-minute budget: the prompt
        and the reply's limit (or a typical reply)."""
        prompt = default_counter().messages(self.request.messages)
        return prompt + (self.request.max_tokens or TYPICAL_REPLY_TOKENS)

    def _too_long(self, resolved: Resolved, state: ReplyState) -> ContextTooLongError | None:
        """For an empty reply: the likely reason when the prompt fills much of the model's window
        (servers such as llama-cpp-python and LiteLLM answer an over-long prompt with nothing)."""
        window = resolved.spec.context_window
        if state.pieces or state.tools.calls() or not window:
            return None
        prompt = default_counter().messages(self.request.messages)
        if prompt < window * CONTEXT_SUSPECT_FRACTION:
            return None
        return ContextTooLongError(
            f"{resolved.qualified_name} sent an empty reply to a prompt of about {prompt:,} tokens; "
            f"its context window is {window:,}",
            hint="the prompt (with room for the reply) probably does not fit: shorten it or the "
            "conversation (start over with --new), or ask with --no-stream to see the server's own error",
            request_id=state.request_id,
        )

    def _thinking_budget(
        self, resolved: Resolved, state: ReplyState, asking: ChatRequest
    ) -> ThinkingBudgetError:
        """The reply hit its token limit after thinking: the answer is missing or cut off."""
        usage = state.usage
        limit = asking.max_tokens or (usage.completion_tokens if usage else None)
        spent = f"all {limit:,}" if limit else "all its"
        model = resolved.qualified_name
        if state.pieces:
            thinking = state.reasoning_tokens or default_counter().count_text(state.reasoning)
            counted = "" if state.reasoning_tokens else "about "
            of = f" of its {limit:,}" if limit else ""
            message = f"{model} spent {counted}{thinking:,}{of} tokens thinking, and its answer was cut off"
        else:
            message = f"{model} spent {spent} tokens thinking and wrote no answer"
        return ThinkingBudgetError(
            message,
            hint="raise --max-tokens (max_tokens=), or think less with --effort low; the thinking "
            "so far is in nbllm.last().reasoning",
            request_id=state.request_id,
        )

    def _empty(self, resolved: Resolved, state: ReplyState) -> EmptyReplyError:
        if state.finish_reason == "length":
            hint = (
                "the reply reached its token limit before any text (a reasoning model may spend "
                "it thinking); raise --max-tokens"
            )
        elif state.crowded:
            hint = f"other requests to the provider were in flight: {SERVER_FLAG}"
        else:
            hint = (
                "servers do this when the prompt does not fit the context window, or for a request "
                "they cannot serve; ask with --no-stream (stream=False) to see the server's own error"
            )
        return EmptyReplyError(
            f"{resolved.qualified_name} ended its reply (finish reason {state.finish_reason or '[DONE]'}) "
            "without any text or tool call",
            hint=hint,
            request_id=state.request_id,
        )

    def _finish(self) -> None:
        result, state = self.result, self.state
        result.text = state.text
        result.finish_reason = state.finish_reason
        result.reasoning = state.reasoning
        result.reasoning_signature = state.signature
        result.tool_calls = state.tools.calls()
        result.request_id = state.request_id
        result.replayed = state.replayed
        result.latency_s = time.perf_counter() - self.started
        if state.first_token_at is not None:
            result.ttft_s = state.first_token_at - self.started
        result.thinking_s = state.thinking_s
        counter = default_counter()
        if state.usage is not None:
            result.usage = replace(state.usage)
        else:
            generated = state.text + "".join(c.arguments for c in result.tool_calls)
            result.usage = estimated_usage(self.request.messages, generated, result.reasoning)
        price = self.routes[len(result.fallbacks)].spec.price
        if state.reported_cost is not None:
            result.cost, result.cost_reported = state.reported_cost, True
        elif price is not None and self.attempts:  # a call refused before sending cost nothing
            result.cost = price.cost(result.usage.prompt_tokens, result.usage.completion_tokens)
        if self.booking is not None:
            self.booking.settle(result.usage.total_tokens)
        if state.reasoning_tokens:
            result.usage.reasoning_tokens = min(state.reasoning_tokens, result.usage.completion_tokens)
        elif result.reasoning:
            thinking = counter.count_text(result.reasoning)
            result.usage.reasoning_tokens = min(thinking, result.usage.completion_tokens)
            result.usage.reasoning_estimated = True


class _ChatExchange:
    """A chat round inside the attempt engine: the protocol chosen per attempt, the reply read
    as events, and the checks a reply must pass to be a success."""

    def __init__(self, call: _Call, resolved: Resolved) -> None:
        self.call, self.resolved = call, resolved
        self.asking = call.request
        self.asked_alone = False

    def prepare(self, resolved: Resolved) -> Outgoing:
        protocol = choose_protocol(resolved.provider)  # once: it prepares and it reads
        self.call.protocol = protocol.name  # the last attempt's, for the log
        return Outgoing(protocol.prepare(resolved, self.asking), protocol)

    def read(
        self, response: httpx.Response, outgoing: Outgoing, state: ReplyState
    ) -> AsyncIterator[ChatEvent]:
        assert outgoing.protocol is not None
        return read_reply(response, outgoing.protocol, self.resolved, outgoing.request, state)

    def check(self, outgoing: Outgoing, state: ReplyState) -> Again | None:
        call, resolved, asking = self.call, self.resolved, self.asking
        if not self.asked_alone and dropped_for_another(state):
            self.asked_alone = True
            return ask_again_alone(resolved, state)
        too_long = call._too_long(resolved, state)  # None unless nothing came back
        if too_long is None and _streamed_nothing_for_tools(outgoing.request, state):
            # llama-cpp-python cannot stream an automatic tool choice and streams nothing;
            # the same request unstreamed gets the tool call.
            self.asking = replace(asking, stream=False)
            return Again(
                StatusEvent(
                    "retry", "the server streamed nothing for an automatic tool choice; asking unstreamed"
                ),
                "EmptyReplyError",
                "streamed nothing for tool_choice auto",
            )
        if not state.complete:
            raise too_long or IncompleteStreamError(
                f"the stream from {resolved.qualified_name} ended without a finish reason or [DONE]",
                hint=_incomplete_hint(state),
                request_id=state.request_id,
            )
        if state.finish_reason == "length" and not state.tools.calls() and _thought(state):
            raise call._thinking_budget(resolved, state, asking)
        if not state.pieces and not state.tools.calls():
            raise too_long or call._empty(resolved, state)
        if any(not tool_call.name for tool_call in state.tools.calls()):
            # Arguments for a call that was never started (no name): not a call anyone can run.
            raise protocol_error(resolved, state, "sent tool-call arguments for a call it never named")
        if _tool_call_required(asking) and not state.tools.calls():
            raise ToolChoiceIgnoredError(
                f"{resolved.qualified_name} answered in text, but tool_choice "
                f"{asking.tool_choice!r} requires a tool call",
                hint="the server ignored tool_choice (llama.cpp's llama-server does for a model "
                "whose chat template has no tools); the text is in nbllm.last(). Use a model "
                "that calls tools, or let the model choose (tool_choice auto)",
                request_id=state.request_id,
            )
        if call.request.json_mode and not state.tools.calls():
            call.result.parsed = _json_reply(resolved, state)
        return None

    def learn(self, error: APIError, outgoing: Outgoing, state: ReplyState) -> Again | None:
        protocol, provider = outgoing.protocol, self.resolved.provider
        probing = protocol is not None and protocol.probing
        if probing and not state.shown and error.status in NO_RESPONSES_STATUSES:
            learn_no_responses(provider)  # for the rest of the session
            return Again(
                StatusEvent(
                    "retry",
                    f"{provider.name} has no Responses API (HTTP {error.status}); using Chat Completions",
                ),
                type(error).__name__,
                error.message,
            )
        return None


def stream_call(
    request: ChatRequest, routes: Sequence[Resolved], options: CallOptions | None = None
) -> AsyncGenerator[ChatEvent, None]:
    """Run one call along `routes` (from `plan_routes`), yielding tokens, status events,
    complete tool calls, then `DoneEvent`. The call's own generator, not a wrapper around it."""
    return _Call(request, routes, options or CallOptions()).events()


async def run_call(
    request: ChatRequest, routes: Sequence[Resolved], options: CallOptions | None = None
) -> ChatResult:
    """Run one call to the end and return its result."""
    async with aclosing(stream_call(request, routes, options)) as events:
        async for event in events:
            if isinstance(event, DoneEvent):
                return event.result
    raise AssertionError("a call ends with DoneEvent or an error")


def run_call_sync(
    request: ChatRequest, routes: Sequence[Resolved], options: CallOptions | None = None
) -> ChatResult:
    """`run_call` on the background event loop; safe inside a running kernel."""
    return loop_thread().run(run_call(request, routes, options))
