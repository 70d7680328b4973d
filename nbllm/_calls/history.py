"""The call history: one `CallRecord` per call, with one `AttemptRecord` per HTTP attempt.

Bounded (oldest records drop first), observable (the panel, the log, the budget and traces
subscribe) and shared between threads. Records hold timings, token counts and error summaries,
never keys; a record carries its prompt and reply (its `Transcript`) only while the opt-in log
or traces ask for them, and only to its subscribers: `add` drops it once they have been told.

Every record is labelled, where it is added, with the `CallLabels` of the task that made it (a
cell sets its conversation, notebook and cell id), so calls of every kind (chat, tools,
embeddings, map rows) are labelled in the one place they all pass.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from nbllm._calls.results import ChatResult, EmbedResult, Status, tokens_per_second
from nbllm._observers import Observers
from nbllm._session import session

DEFAULT_MAX_RECORDS = 1000
_ids = itertools.count(1)


@dataclass(frozen=True)
class CallLabels:
    """Where a call was made: its conversation, and the notebook and cell when known."""

    conversation: str | None = None
    notebook: str | None = None
    cell_id: str | None = None


NO_LABELS = CallLabels()
call_labels: ContextVar[CallLabels] = ContextVar("nbllm_call_labels", default=NO_LABELS)
"""Set by whoever runs calls (a cell, for its task); read when a record is added."""


@dataclass
class Transcript:
    """What a call sent and got back, for the log: the messages, the reply, its thinking and the
    tool calls it asked for, and the protocol that carried them."""

    messages: list[dict[str, Any]]
    reply: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    protocol: str | None = None


@dataclass
class AttemptRecord:
    """One HTTP attempt within a call: which model and host, when, how long, the HTTP status, and
    how it ended (``ok`` or the error class name, with the first line of its message)."""

    model: str
    host: str
    started_at: datetime
    latency_s: float | None = None
    http_status: int | None = None
    outcome: str = "unfinished"
    """ok, the error class name, or cancelled; unfinished until the attempt ends (earned, never
    assumed: see `nbllm._calls.attempt`)."""
    error: str | None = None


@dataclass
class CallRecord:
    """One call as the history keeps it: model, timings, token counts, status, retries and
    fallbacks, and one `AttemptRecord` per HTTP attempt. Never the prompt, the reply or a key."""

    model: str
    """Qualified name of the model that answered last (after fallbacks)."""
    requested: str
    host: str
    started_at: datetime
    id: int = field(default_factory=lambda: next(_ids))
    ttft_s: float | None = None
    latency_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    reasoning_tokens: int = 0
    """Of the completion tokens, those a reasoning model spent thinking."""
    reasoning_estimated: bool = False
    thinking_s: float | None = None
    """How long the model streamed thinking before it answered."""
    status: Status = "ok"
    error_class: str | None = None
    error_message: str | None = None
    retries: int = 0
    fallbacks: list[str] = field(default_factory=list)
    request_id: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    replayed: str | None = None
    """``cassette`` or ``cache`` when the reply was played back from a recording."""
    kind: Literal["chat", "embed", "tool"] = "chat"
    """A chat reply, an embeddings call (`nbllm.embed`: its tokens are all input), or a tool
    the model asked for (`model` is ``tool:NAME``, `requested` the model that asked)."""
    tool_arguments: str | None = None
    """For a tool: its arguments as the model wrote them, secrets masked, clipped."""
    approval: str | None = None
    """For a tool: how it was allowed or refused ("read-only", "approved", "denied", ...)."""
    result_chars: int | None = None
    """For a tool that ran: the size of the result the model got back."""
    texts: int = 0
    """For an embeddings call: how many texts it embedded (or tried to)."""
    cost: float | None = None
    """Dollars, reported by the server or estimated from the model's price (None: unknown)."""
    cost_reported: bool = False
    finish_reason: str | None = None
    conversation: str | None = None
    notebook: str | None = None
    cell_id: str | None = None
    transcript: Transcript | None = field(default=None, repr=False, compare=False)
    """The prompt and reply, for subscribers only, while the log or traces want them
    (`History.keep_transcripts`)."""

    def _repr_llm_(self) -> str:
        """One line for a model reading the history: no prompt or reply is kept to show."""
        took = "" if self.latency_s is None else f" in {self.latency_s:.2f} s"
        tokens = f"{self.prompt_tokens}+{self.completion_tokens} tokens"
        error = f", {self.error_class}: {self.error_message}" if self.error_class else ""
        return f"{self.started_at:%H:%M:%S} {self.model}: {self.status}{took}, {tokens}{error}"

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed: completion tokens over the time after the first token."""
        return tokens_per_second(self.completion_tokens, self.latency_s, self.ttft_s)

    @classmethod
    def from_result(
        cls,
        result: ChatResult,
        *,
        requested: str,
        host: str,
        started_at: datetime,
        attempts: list[AttemptRecord],
        error_class: str | None = None,
    ) -> CallRecord:
        """The record of a finished call: everything but its prompt, reply and the call's own
        bookkeeping (what was asked, where, when, each attempt) comes from its result."""
        return cls(
            model=result.model,
            requested=requested,
            host=host,
            started_at=started_at,
            ttft_s=result.ttft_s,
            latency_s=result.latency_s,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            tokens_estimated=result.usage.estimated,
            reasoning_tokens=result.usage.reasoning_tokens,
            reasoning_estimated=result.usage.reasoning_estimated or result.usage.estimated,
            thinking_s=result.thinking_s,
            status=result.status,
            error_class=error_class,
            error_message=result.error,
            retries=result.retries,
            fallbacks=list(result.fallbacks),
            request_id=result.request_id,
            attempts=list(attempts),
            replayed=result.replayed,
            cost=result.cost,
            cost_reported=result.cost_reported,
            finish_reason=result.finish_reason,
        )

    @classmethod
    def from_embedding(
        cls,
        result: EmbedResult,
        *,
        host: str,
        started_at: datetime,
        attempts: list[AttemptRecord],
        error_class: str | None,
        replayed: str | None,
        cost: float | None,
    ) -> CallRecord:
        """The record of a finished `nbllm.embed` call: its tokens are all input; never a text."""
        return cls(
            model=result.model,
            requested=result.model,
            host=host,
            started_at=started_at,
            latency_s=result.latency_s,
            prompt_tokens=result.usage.prompt_tokens,
            tokens_estimated=result.usage.estimated,
            status=result.status,
            error_class=error_class,
            error_message=result.error,
            retries=result.retries,
            attempts=list(attempts),
            kind="embed",
            texts=len(result.vectors),
            replayed=replayed,
            cost=cost,
        )


@dataclass(frozen=True)
class ModelSummary:
    model: str
    calls: int
    errors: int
    p50_latency_s: float | None
    p95_latency_s: float | None
    p50_ttft_s: float | None
    p95_ttft_s: float | None
    cost: float | None = None
    """Dollars across the model's calls whose cost is known (None: none is)."""
    stopped: int = 0
    """Calls the user stopped (Stop, an interrupt): not errors, counted apart."""
    cost_estimated: bool = False
    """Whether any of those costs is nbllm's estimate rather than the server's report."""


def _total_cost(records: list[CallRecord]) -> float | None:
    costs = [r.cost for r in records if r.cost is not None]
    return sum(costs) if costs else None


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation): an observed value, stable for small samples."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class History:
    """The session's call records, oldest first."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: deque[CallRecord] = deque(maxlen=max_records)
        self._observers = Observers("history")
        self.transcript_wanted_by: set[str] = set()
        """Who wants calls to attach their `Transcript` (the log, traces with content)."""
        self._spent: dict[str, float] = {}
        self.notice: str | None = None
        """A one-time note for the next reply's footer (the log says it is on)."""

    @property
    def keep_transcripts(self) -> bool:
        """Whether calls should attach their transcript to their record."""
        return bool(self.transcript_wanted_by)

    def spent_by_provider(self) -> dict[str, float]:
        """What the session's calls cost, by provider (every call since the session began, also
        those the bounded history has forgotten)."""
        with self._lock:
            return dict(self._spent)

    def take_notice(self) -> str | None:
        """The pending notice, once."""
        notice, self.notice = self.notice, None
        return notice

    @property
    def max_records(self) -> int:
        """How many records are kept; the oldest drop first."""
        return self._records.maxlen or DEFAULT_MAX_RECORDS

    @max_records.setter
    def max_records(self, value: int) -> None:
        if value < 1:
            raise ValueError("the history must keep at least one record")
        with self._lock:
            self._records = deque(self._records, maxlen=value)

    def add(self, record: CallRecord) -> None:
        """Label a record with the running task's `call_labels`, append it and tell the
        subscribers."""
        labels = call_labels.get()
        record.conversation = record.conversation or labels.conversation
        record.notebook = record.notebook or labels.notebook
        record.cell_id = record.cell_id or labels.cell_id
        with self._lock:
            self._records.append(record)
            if record.cost:
                provider = record.model.partition("/")[0]
                self._spent[provider] = self._spent.get(provider, 0.0) + record.cost
        self._observers.emit(record)
        # Subscribers that want the prompt and reply took them as they were told; the history
        # itself keeps no prompt or reply.
        record.transcript = None

    def subscribe(self, listener: Callable[[CallRecord], None]) -> Callable[[], None]:
        """Call `listener` with each new record; returns the function that unsubscribes."""
        return self._observers.subscribe(listener)

    def records(self) -> list[CallRecord]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def summaries(self) -> dict[str, ModelSummary]:
        """Per model: calls, errors, p50/p95 latency and time to first token."""
        by_model: dict[str, list[CallRecord]] = {}
        for record in self.records():
            if record.kind == "tool":  # a tool's run is in the table, not a model's figures
                continue
            by_model.setdefault(record.model, []).append(record)
        result = {}
        for model, records in by_model.items():
            ok = [r for r in records if r.status == "ok"]
            latencies = [r.latency_s for r in ok if r.latency_s is not None]
            ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
            result[model] = ModelSummary(
                model=model,
                calls=len(records),
                errors=sum(r.status not in ("ok", "cancelled") for r in records),
                stopped=sum(r.status == "cancelled" for r in records),
                p50_latency_s=percentile(latencies, 0.5),
                p95_latency_s=percentile(latencies, 0.95),
                p50_ttft_s=percentile(ttfts, 0.5),
                p95_ttft_s=percentile(ttfts, 0.95),
                cost=_total_cost(records),
                cost_estimated=any(r.cost is not None and not r.cost_reported for r in records),
            )
        return result

    def __repr__(self) -> str:
        return f"<History {len(self._records)} of at most {self.max_records} calls>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass
class LastResult:
    """The session's most recent result (`nbllm.last()`)."""

    result: ChatResult | None = None


def set_last(result: ChatResult) -> None:
    """Make `result` the one `nbllm.last()` returns."""
    session().part(LastResult).result = result


def last() -> ChatResult | None:
    """The result of the most recent call or `%%chat` cell (also a failed, cancelled or
    interrupted one, with its partial text), or None."""
    return session().part(LastResult).result


def get_history() -> History:
    """The session's history: the one every call records into and the panel shows."""
    return session().part(History)
