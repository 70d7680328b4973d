"""One batch run: a prompt template over many rows, on the call engine.

Each row is one call (`nbllm._calls.call`), so rows get the provider's retries, fallbacks,
history records and rate limits like any other call. The run's `concurrency`, `rpm` and `tpm`
are registered on the provider while it lasts (see `nbllm._calls.pacing`): every call to it
counts against them, so a cell's call waits rather than adding one more in flight.
A row that fails is a row with status ``error``: the run goes on.

Rows are sent unstreamed: a batch shows rows, not tokens, and one body per row costs the
kernel less than an event per token.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import time
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from nbllm._batch.checkpoint import Checkpoint, default_path, fingerprint
from nbllm._batch.counters import Progress
from nbllm._batch.rows import RESULT_COLUMNS, Rows, check_columns
from nbllm._calls.attempt import CallOptions
from nbllm._calls.call import stream_call, to_messages
from nbllm._calls.pacing import budgets
from nbllm._calls.preparation import prepare_call
from nbllm._calls.request import ChatRequest
from nbllm._calls.results import ChatResult, DoneEvent, StatusEvent
from nbllm._calls.routes import plan_routes
from nbllm._cells.interpolate import interpolate
from nbllm._cells.typed import check_schema, run_typed
from nbllm._constants import MAP_CONCURRENCY
from nbllm._exceptions import APIError, InterpolationError, NbllmError, PromptError
from nbllm._providers.resolved import Resolved

REQUEST_FIELDS = ("temperature", "max_tokens", "seed", "stop", "effort")
"""The request options a run passes to every row's call (and keys its checkpoint by)."""


@dataclass
class MapSpec:
    """What to ask of every row, and how fast; checked when it is made."""

    template: str
    model: str | None = None
    schema: type[pydantic.BaseModel] | None = None
    system: str | None = None
    concurrency: int = MAP_CONCURRENCY
    rpm: float | None = None
    tpm: int | None = None
    max_cost: float | None = None
    output: str = "output"
    request: dict[str, Any] = field(default_factory=dict)
    """Request options for every call (`REQUEST_FIELDS`)."""
    fallback: str | list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.template, str) or not self.template.strip():
            raise PromptError("the template is empty: write the prompt, with {column} for each row's values")
        if self.schema is not None:
            self.schema = check_schema(self.schema)
        _whole("concurrency", self.concurrency, at_least=1)
        if self.rpm is not None:
            _positive("rpm", self.rpm)
        if self.tpm is not None:
            _whole("tpm", self.tpm, at_least=1)
        if self.max_cost is not None:
            _positive("max_cost", self.max_cost)
        unknown = set(self.request) - set(REQUEST_FIELDS)
        if unknown:
            raise PromptError(
                f"unknown request option {sorted(unknown)[0]!r}; the options are {REQUEST_FIELDS}"
            )
        if not isinstance(self.output, str) or not self.output.isidentifier():
            raise PromptError(f"output should be a column name such as 'label', not {self.output!r}")

    def output_columns(self) -> list[str]:
        fields = list(self.schema.model_fields) if self.schema is not None else [self.output]
        return [*fields, *RESULT_COLUMNS]

    def run_key(self, resolved: Resolved) -> str:
        """What a row's checkpoint key shares with every other row of this run."""
        schema = self.schema.model_json_schema() if self.schema is not None else None
        return fingerprint(
            self.template, self.system, resolved.qualified_name, resolved.chat_url, self.request, schema
        )


def map_spec(template: str, model: str | None, options: Mapping[str, Any]) -> MapSpec:
    """The one builder of a `MapSpec`, for `nbllm.map`/`amap` and ``%%chat --map``: `options`
    holds what the caller was given (None for "not given"), under `nbllm.map`'s names."""
    if model is not None and not isinstance(model, str):
        raise PromptError(f"model should be a name such as 'provider/model', not {model!r}")
    given = {name: value for name, value in options.items() if value is not None}
    request = {name: given.pop(name) for name in REQUEST_FIELDS if name in given}
    if isinstance(request.get("stop"), str):
        request["stop"] = [request["stop"]]
    fallback = given.get("fallback")
    if isinstance(fallback, list | tuple):
        fallback = list(fallback)
    return MapSpec(
        template=template,
        model=model,
        schema=given.get("schema"),
        system=given.get("system"),
        concurrency=given.get("concurrency", MAP_CONCURRENCY),
        rpm=given.get("rpm"),
        tpm=given.get("tpm"),
        max_cost=given.get("max_cost"),
        output=given.get("output", "output"),
        request=request,
        fallback=fallback,
    )


Checkpointing = str | os.PathLike[str] | bool | None


def checkpoint_path(checkpoint: Checkpointing) -> str | bool | None:
    """What a run's `checkpoint` option means: None or True, the default file; False (or the
    word ``none``, as ``%%chat --map --checkpoint none`` writes it), no checkpoint; else a path."""
    if checkpoint is None or isinstance(checkpoint, bool):
        return checkpoint
    path = os.fspath(checkpoint)
    return False if path.strip().lower() == "none" else path


def _whole(name: str, value: Any, *, at_least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < at_least:
        raise PromptError(f"{name} should be a whole number of at least {at_least}, not {value!r}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PromptError(f"{name} should be a number above 0, not {value!r}")


class MapRun:
    """The state of one run: each row's outcome, the counters, and how to stop it."""

    def __init__(
        self,
        spec: MapSpec,
        rows: Rows,
        *,
        checkpoint: str | Path | bool | None = None,
        namespace: Mapping[str, Any] | None = None,
        call_options: CallOptions | None = None,
    ) -> None:
        self.spec = spec
        self.rows = rows
        check_columns(rows, spec.output_columns())
        self.routes = plan_routes(spec.model, spec.fallback)
        self.resolved = self.routes[0]
        self.namespace = namespace or {}
        self.call_options = call_options or CallOptions()
        self.prompts = [self._prompt(index, row) for index, row in enumerate(rows.records)]
        # Every row asks the same but for its text: one preparation, before any row is sent.
        prepare_call(
            self._request(self.prompts[0] if self.prompts else spec.template), self.routes, spec.schema
        )
        run_key = spec.run_key(self.resolved)
        # A row is its fully rendered request (notebook variables filled in), to the endpoint
        # with its extra body: change any of them and the row is asked again.
        extra = self.resolved.provider.extra_body
        self.keys = [fingerprint(run_key, self._request(prompt).messages, extra) for prompt in self.prompts]
        self.checkpoint = self._open_checkpoint(checkpoint, run_key)
        self.outcomes: list[dict[str, Any] | None] = [None] * len(rows.records)
        self.progress = Progress(
            len(rows.records), checkpoint=str(self.checkpoint.path) if self.checkpoint is not None else None
        )
        self._stop: str | None = None
        self._asking: set[int] = set()
        """Rows sent and not yet answered (an interrupt cancels these)."""
        self._row_costs: collections.deque[float] = collections.deque(maxlen=50)

    def _prompt(self, index: int, row: Mapping[str, Any]) -> str:
        """Row `index`'s prompt; a template that cannot be filled is refused before anything is
        sent (it would fail the same way row after row), naming the row."""
        scope = collections.ChainMap(dict(row), dict(self.namespace)) if self.namespace else row
        try:
            return interpolate(self.spec.template, scope).text
        except InterpolationError as error:
            raise InterpolationError(
                f"row {index}: {error.message}", hint=f"the row's columns are {', '.join(map(str, row))}"
            ) from None

    @staticmethod
    def _open_checkpoint(checkpoint: str | Path | bool | None, run_key: str) -> Checkpoint | None:
        if checkpoint is False:
            return None
        if checkpoint is None or checkpoint is True:
            return Checkpoint(default_path(run_key))
        return Checkpoint(checkpoint)

    def stop(self, reason: str = "stopped with the Stop button") -> None:
        """Dispatch no more rows; the rows in flight finish."""
        self._stop = self._stop or reason

    async def run(self) -> list[dict[str, Any]]:
        """Ask every row not in the checkpoint; return every row's output columns."""
        self._resume()
        pending = collections.deque(i for i, outcome in enumerate(self.outcomes) if outcome is None)
        workers = min(self.spec.concurrency, len(pending))
        try:
            with budgets(self.resolved.provider.name, self.spec.concurrency, self.spec.rpm, self.spec.tpm):
                await asyncio.gather(*(self._worker(pending) for _ in range(workers)))
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.stop("interrupted")
            raise
        finally:
            self.progress.stopped = self._stop
            if self.spec.max_cost is not None and self.progress.cost is None and self.progress.finished_rows:
                self.progress.notes.append(
                    f"max_cost did not apply: {self.resolved.qualified_name} has no price (%llm_provider "
                    "model ... set --price IN,OUT) and the server reported no cost"
                )
            self._close()
        return self.outputs()

    def _close(self) -> None:
        self.progress.finished = time.monotonic()
        self.progress.in_flight = 0
        if self.checkpoint is not None:
            self.checkpoint.close()

    def outputs(self) -> list[dict[str, Any]]:
        """Every row's output columns: its answer, or why there is none (also mid-run)."""
        return [
            outcome if outcome is not None else self._missing(index)
            for index, outcome in enumerate(self.outcomes)
        ]

    def _missing(self, index: int) -> dict[str, Any]:
        if index in self._asking:
            return self._row_outcome(None, "cancelled", f"{self._stop or 'stopped'} while it was being asked")
        return self._row_outcome(None, "not run", self._stop or "not run")

    def _resume(self) -> None:
        if self.checkpoint is None:
            return
        saved = self.checkpoint.done(self.keys)
        for index, key in enumerate(self.keys):
            if key in saved:
                self.outcomes[index] = self._from_saved(saved[key])
                self.progress.skipped += 1  # paid for by an earlier run: not this run's cost

    def _from_saved(self, saved: dict[str, Any]) -> dict[str, Any]:
        outcome = dict(saved)
        if self.spec.schema is not None and isinstance(outcome.get("fields"), dict):
            outcome = {**outcome.pop("fields"), **outcome}
        return outcome

    async def _worker(self, pending: collections.deque[int]) -> None:
        while pending and self._stop is None:
            if self._over_budget():
                self.stop(f"max_cost ${self.spec.max_cost:g} would be passed")
                return
            index = pending.popleft()
            self.progress.in_flight += 1
            self._asking.add(index)
            try:
                self.outcomes[index] = await self._ask(index)
            finally:
                self.progress.in_flight -= 1
                if self.outcomes[index] is not None:
                    self._asking.discard(index)

    def _over_budget(self) -> bool:
        """Whether one more row could take the cost past max_cost, counting the rows in flight
        at the recent cost per row."""
        limit = self.spec.max_cost
        if limit is None or self.progress.cost is None:
            return False
        per_row = sum(self._row_costs) / len(self._row_costs) if self._row_costs else 0.0
        return self.progress.cost + per_row * (self.progress.in_flight + 1) > limit

    def _request(self, prompt: str) -> ChatRequest:
        return ChatRequest(messages=to_messages(prompt, self.spec.system), stream=False, **self.spec.request)

    async def _ask(self, index: int) -> dict[str, Any]:
        request = self._request(self.prompts[index])
        try:
            if self.spec.schema is not None:
                result = await run_typed(request, self.resolved, self.spec.schema, self._call)
            else:
                result = await self._call(request)
        except APIError as error:
            failed = error.result if isinstance(error.result, ChatResult) else None
            self._count(failed, ok=False)
            return self._row_outcome(failed, "error", f"{type(error).__name__}: {error.message}")
        except NbllmError as error:  # e.g. a key that went missing mid-run
            self._count(None, ok=False)
            return self._row_outcome(None, "error", f"{type(error).__name__}: {error.message}")
        self._count(result, ok=True)
        outcome = self._row_outcome(result, "ok", None)
        if self.checkpoint is not None:
            try:
                self.checkpoint.save(self.keys[index], self._to_saved(outcome))
            except (sqlite3.Error, OSError) as exc:  # the row is done; the checkpoint failed
                self.progress.notes.append(str(self.checkpoint.error("cannot write", exc)).split("\n")[0])
                self.stop("the checkpoint could not be written")
        return outcome

    async def _call(self, request: ChatRequest) -> ChatResult:
        async with aclosing(stream_call(request, self.routes, self.call_options)) as events:
            async for event in events:
                if isinstance(event, StatusEvent) and event.kind in ("retry", "rate_limited"):
                    self.progress.retries += 1
                elif isinstance(event, DoneEvent):
                    return event.result
        raise AssertionError("a call ends with DoneEvent or an error")

    def _count(self, result: ChatResult | None, *, ok: bool) -> None:
        progress = self.progress
        if ok:
            progress.done += 1
        else:
            progress.errors += 1
        if result is not None:
            progress.tokens += result.usage.total_tokens
            cost = _row_cost(result)
            progress.add_cost(cost)
            if cost is not None:
                self._row_costs.append(cost)

    def _row_outcome(self, result: ChatResult | None, status: str, error: str | None) -> dict[str, Any]:
        outcome: dict[str, Any]
        if self.spec.schema is None:
            outcome = {self.spec.output: result.text if result is not None and status == "ok" else None}
        else:
            parsed = result.parsed if result is not None and status == "ok" else None
            fields = parsed.model_dump() if isinstance(parsed, pydantic.BaseModel) else {}
            outcome = {name: fields.get(name) for name in self.spec.schema.model_fields}
        latency = result.latency_s if result is not None else None
        outcome.update(
            status=status,
            error=error,
            tokens=result.usage.total_tokens if result is not None else 0,
            latency_s=round(latency, 3) if latency is not None else None,  # to the millisecond
            cost=_row_cost(result) if result is not None else None,
        )
        return outcome

    def _to_saved(self, outcome: dict[str, Any]) -> dict[str, Any]:
        if self.spec.schema is None:
            return outcome
        fields = {name: outcome[name] for name in self.spec.schema.model_fields}
        rest = {k: v for k, v in outcome.items() if k not in fields}
        return {"fields": fields, **rest}


def _row_cost(result: ChatResult) -> float | None:
    """A row's cost: none for a row that got no reply (a refused or failed request is not billed
    for an answer; its token counts are only estimates of the prompt)."""
    if not (result.text or result.tool_calls) and result.status != "ok":
        return None
    return result.cost
