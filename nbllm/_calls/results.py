"""What a call produces: streamed events and the final `ChatResult`; an `EmbedResult` for
embeddings."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nbllm import _numbers as numbers
from nbllm._safe_markdown import inert_markdown

Status = Literal["ok", "error", "cancelled", "incomplete"]

SHORTEST_SPEED_WINDOW_S = 0.005
"""Tokens over less time than this after the first one are not a speed (a whole reply parsed
at once would read as millions of tokens a second)."""


def tokens_per_second(completion_tokens: int, latency_s: float | None, ttft_s: float | None) -> float | None:
    """Generation speed: tokens over the time after the first token (the wait is not speed)."""
    if not latency_s or not completion_tokens:
        return None
    generating = latency_s - (ttft_s or 0.0)
    # A reply that came whole (unstreamed) has no time after its first token worth the name.
    return completion_tokens / generating if generating >= SHORTEST_SPEED_WINDOW_S else None


format_cost = numbers.cost
"""Kept under its old name for the modules that import it from here."""


@dataclass
class Usage:
    """Tokens of one call: the server's counts, or nbllm's estimate (``estimated``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    """True when the server sent no usage and the counts are nbllm's estimate."""
    reasoning_tokens: int = 0
    """Of the completion tokens, those spent thinking (a reasoning model's)."""
    reasoning_estimated: bool = False
    """True when `reasoning_tokens` is nbllm's estimate (the server did not count them apart)."""

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


def estimated_usage(prompt_messages: Sequence[Any], answer: str, reasoning: str = "") -> Usage:
    """Usage counted by nbllm when the server sent none (a stopped or cut-off call, or a server
    without usage): the one estimate the footer, the history and the budget all show."""
    from nbllm._calls.tokens import default_counter  # the counter may load tiktoken: not at import

    counter = default_counter()
    thinking = counter.count_text(reasoning) if reasoning else 0
    usage = Usage(counter.messages(prompt_messages), counter.count_text(answer) + thinking, estimated=True)
    if thinking:
        usage.reasoning_tokens, usage.reasoning_estimated = thinking, True
    return usage


@dataclass
class ToolCall:
    """A tool call the model asked for: its id, the function's name, and the arguments."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them (a JSON string, not validated)."""

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (raises `ValueError` if the model wrote bad JSON)."""
        return json.loads(self.arguments or "{}")


@dataclass
class ChatResult:
    """The outcome of one call (after retries and fallbacks)."""

    text: str = ""
    model: str = ""
    """Qualified name of the model that answered (after any fallback)."""
    status: Status = "ok"
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""
    """A reasoning model's thinking, apart from its answer in `text`."""
    reasoning_signature: str = ""
    """The signature an Anthropic-compatible endpoint put on the thinking (sent back with it)."""
    ttft_s: float | None = None
    """Time to the first token, of thinking or of the answer."""
    thinking_s: float | None = None
    """How long the model streamed thinking before it answered (None when it showed none)."""
    latency_s: float | None = None
    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)
    request_id: str | None = None
    error: str | None = None
    parsed: Any = None
    """The reply decoded from JSON, for a call made in JSON mode (``--json``)."""
    replayed: str | None = None
    """``cassette`` or ``cache`` when the reply was played back from a recording (its timings
    are the playback's, not the model's)."""
    cost: float | None = None
    """Dollars: the server's reported cost, else the model's price (``--price``) times the
    tokens; None when neither is known."""
    cost_reported: bool = False
    """Whether `cost` is the server's own figure rather than nbllm's estimate."""

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed: completion tokens over the time after the first token."""
        return tokens_per_second(self.usage.completion_tokens, self.latency_s, self.ttft_s)

    @property
    def answer_after_s(self) -> float | None:
        """When the answer began: after the thinking, for a reasoning model."""
        if self.ttft_s is None:
            return None
        return self.ttft_s + (self.thinking_s or 0.0)

    @property
    def answer_tokens(self) -> int:
        """Completion tokens that were answer, not thinking."""
        return max(0, self.usage.completion_tokens - self.usage.reasoning_tokens)

    @property
    def thinking_estimated(self) -> bool:
        """Whether the thinking token count is nbllm's estimate."""
        return self.usage.reasoning_estimated or self.usage.estimated

    def footer(self) -> str:
        """One line of facts: model, TTFT, total time, tokens, tokens/s, retries, fallbacks."""
        parts = [self.model]
        if self.ttft_s is not None and self.thinking_s is not None:
            # A reasoning model's first token is a thought: the wait that matters is the answer's.
            parts.append(f"answer after {numbers.seconds(self.answer_after_s or 0.0)}")
        elif self.ttft_s is not None:
            parts.append(f"first token {numbers.seconds(self.ttft_s)}")
        if self.latency_s is not None:
            parts.append(f"total {numbers.seconds(self.latency_s)}")
        if self.thinking_s is not None:
            parts.append(f"thought {numbers.seconds(self.thinking_s)}")
        usage = self.usage
        if usage.reasoning_tokens:
            thinking = numbers.count(usage.reasoning_tokens, estimated=self.thinking_estimated)
            answer = numbers.count(self.answer_tokens, estimated=usage.estimated)
            parts.append(f"{thinking} thinking + {answer} answer tokens")
        elif usage.completion_tokens or self.status == "ok":  # a failed call's "~0 tokens" says nothing
            parts.append(f"{numbers.count(usage.completion_tokens, estimated=usage.estimated)} tokens")
        if self.cost is not None:
            parts.append(numbers.cost(self.cost, estimated=not self.cost_reported))
        if self.tokens_per_s and not self.replayed and not usage.estimated:
            # A playback's speed says nothing of the model; an estimate's says little of it.
            parts.append(f"{self.tokens_per_s:.1f} tok/s")
        if self.retries:
            parts.append(f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}")
        if self.fallbacks:
            parts.append("fell back from " + ", ".join(self.fallbacks))
        if self.replayed:
            parts.append("replayed from the cassette" if self.replayed == "cassette" else "from the cache")
        if self.status != "ok":
            parts.append(self.status.upper())
        return " · ".join(parts)

    def __str__(self) -> str:
        return self.text

    def _repr_llm_(self) -> str:
        """This reply as context for another prompt: who said it, then what."""
        return f"Reply from {self.model} ({self.status}):\n\n{self.text}"

    def _repr_markdown_(self) -> str:
        return f"{inert_markdown(self.text)}\n\n<sub>{html.escape(self.footer())}</sub>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"{self.text}\n[{self.footer()}]")


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningEvent:
    """A piece of a reasoning model's thinking (shown apart from the answer)."""

    text: str


@dataclass(frozen=True)
class ToolCallEvent:
    """A tool call, complete (its argument deltas assembled)."""

    call: ToolCall


@dataclass(frozen=True)
class StatusEvent:
    """Something a display should show while no tokens flow: a retry, a fallback."""

    kind: Literal["retry", "fallback", "rate_limited"]
    message: str
    wait_s: float = 0.0
    attempt: int = 0
    attempts: int = 0


@dataclass(frozen=True)
class DoneEvent:
    """The last event of a stream that finished (ok); carries the result."""

    result: ChatResult


ChatEvent = TokenEvent | ReasoningEvent | ToolCallEvent | StatusEvent | DoneEvent


@dataclass
class EmbedResult:
    """The outcome of one `nbllm.embed`: a vector per text, in order. When a batch fails, its
    texts' vectors are None and the others are kept (the error's ``result`` is this)."""

    vectors: list[list[float] | None]
    model: str = ""
    dimensions: int | None = None
    """The length of every vector (None when none came back)."""
    usage: Usage = field(default_factory=Usage)
    """Input tokens, as the server counted them (or nbllm's estimate, ``usage.estimated``)."""
    status: Status = "ok"
    latency_s: float | None = None
    requests: int = 0
    """The batches sent (one request each, retries not counted)."""
    retries: int = 0
    error: str | None = None

    def missing(self) -> list[int]:
        """The positions of the texts that have no vector (their batch failed or never ran)."""
        return [i for i, vector in enumerate(self.vectors) if vector is None]

    def __repr__(self) -> str:
        dims = f"{self.dimensions} dimensions" if self.dimensions else "no vectors"
        done = len(self.vectors) - len(self.missing())
        return f"<EmbedResult {self.model}: {done} of {len(self.vectors)} texts, {dims}, {self.status}>"


def combine_rounds(rounds: Sequence[ChatResult]) -> ChatResult:
    """One result for a call that took several rounds (tool calls, a typed reply's repair round):
    the last round's text and status, every round's tool calls and thinking, and the tokens,
    time, cost, retries and fallbacks of all. The one way rounds are summed: the API, cells and
    batch runs all use it, and it is associative, so rounds summed in groups give the same."""
    last = rounds[-1]
    thinking_times = [r.thinking_s for r in rounds if r.thinking_s is not None]
    return ChatResult(
        text=last.text,
        model=last.model,
        status=last.status,
        finish_reason=last.finish_reason,
        usage=Usage(
            sum(r.usage.prompt_tokens for r in rounds),
            sum(r.usage.completion_tokens for r in rounds),
            any(r.usage.estimated for r in rounds),
            sum(r.usage.reasoning_tokens for r in rounds),
            any(r.usage.reasoning_estimated for r in rounds),
        ),
        tool_calls=[c for r in rounds for c in r.tool_calls],
        reasoning="\n\n".join(r.reasoning for r in rounds if r.reasoning),
        ttft_s=rounds[0].ttft_s,
        thinking_s=sum(thinking_times) if thinking_times else None,
        latency_s=sum(r.latency_s or 0.0 for r in rounds),
        retries=sum(r.retries for r in rounds),
        fallbacks=list(dict.fromkeys(f for r in rounds for f in r.fallbacks)),
        request_id=last.request_id,
        error=last.error,
        replayed=last.replayed if all(r.replayed == last.replayed for r in rounds) else None,
        cost=sum(costs) if (costs := [r.cost for r in rounds if r.cost is not None]) else None,
        cost_reported=all(r.cost_reported for r in rounds),
    )
