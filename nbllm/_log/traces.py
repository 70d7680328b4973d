"""OpenTelemetry traces (``%llm_trace on``, ``NBLLM_OTEL=1``; the ``otel`` extra).

Each call becomes a span following the GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``,
``gen_ai.response.finish_reasons``, ``error.type``), with one child span per HTTP attempt; a tool
call the model asked for is an ``execute_tool`` span under the call that asked for it. Spans are
made from the call history (so every entry point is traced) with the call's own start and end
times, through the OpenTelemetry API: they go wherever the user's OpenTelemetry setup sends
them (without one, the API's no-op tracer drops them). Prompt and reply text are attributes
(``gen_ai.input.messages``, ``gen_ai.output.messages``) only with ``--content``, masked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nbllm._calls.history import CallRecord, get_history
from nbllm._constants import version
from nbllm._exceptions import LogError
from nbllm._providers.secret_registry import session_secrets
from nbllm._providers.secret_text import mask_json, mask_values
from nbllm._session import session

OTEL_ENV = "NBLLM_OTEL"
OTEL_INSTALL = "pip install 'nbllm[otel]'"
OPERATIONS = {"chat": "chat", "embed": "embeddings", "tool": "execute_tool"}


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


class Traces:
    """The session's tracing: off, or making a span of every call."""

    def __init__(self) -> None:
        self.content = False
        self._tracer: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._asking: dict[str, Any] = {}  # model -> the context of its newest chat span

    @property
    def on(self) -> bool:
        return self._tracer is not None

    def turn_on(self, *, content: bool = False) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise LogError(f"traces need OpenTelemetry: {OTEL_INSTALL}") from None
        self.turn_off()
        self._tracer = trace.get_tracer("nbllm", version())
        self.content = content
        history = get_history()
        if content:
            history.transcript_wanted_by.add("traces")
        self._unsubscribe = history.subscribe(self.record)

    def turn_off(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        get_history().transcript_wanted_by.discard("traces")
        self._tracer, self.content = None, False
        self._asking.clear()

    def record(self, record: CallRecord) -> None:
        """One call as spans (a history subscriber: called once per record)."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer = self._tracer
        if tracer is None:
            return
        operation = OPERATIONS.get(record.kind, "chat")
        provider, _, model = record.model.partition("/")
        parent = None
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        if record.kind == "tool":
            tool = record.model.removeprefix("tool:")
            name = f"execute_tool {tool}"
            parent = self._asking.get(record.requested)
            attributes |= {"gen_ai.tool.name": tool, "gen_ai.tool.type": "function"}
            if record.approval:
                attributes["nbllm.tool.approval"] = record.approval
            if self.content and record.tool_arguments:
                attributes["gen_ai.tool.call.arguments"] = record.tool_arguments
        else:
            name = f"{operation} {model}"
            attributes |= {
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": record.requested.partition("/")[2] or record.requested,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": record.prompt_tokens,
                "server.address": record.host,
            }
            if record.kind == "chat":
                attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
            if record.finish_reason:
                attributes["gen_ai.response.finish_reasons"] = (record.finish_reason,)
            if record.request_id:
                attributes["gen_ai.response.id"] = record.request_id
            if record.conversation:
                attributes["gen_ai.conversation.id"] = record.conversation
            if record.cost is not None:
                attributes["nbllm.cost"] = record.cost
            if self.content and record.transcript is not None:
                secrets = session_secrets()
                transcript = record.transcript
                attributes["gen_ai.input.messages"] = json.dumps(mask_json(transcript.messages, secrets))
                output = {"role": "assistant", "content": mask_values(transcript.reply, secrets)}
                attributes["gen_ai.output.messages"] = json.dumps([output])
        if record.error_class:
            attributes["error.type"] = record.error_class
        started = record.started_at
        ended = started + timedelta(seconds=record.latency_s or 0.0)
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL if record.kind == "tool" else SpanKind.CLIENT,
            attributes=attributes,
            start_time=_ns(started),
        )
        context = trace.set_span_in_context(span)
        for number, attempt in enumerate(record.attempts, start=1):
            child = tracer.start_span(
                f"attempt {number}",
                context=context,
                kind=SpanKind.CLIENT,
                attributes={
                    "server.address": attempt.host,
                    "nbllm.attempt.outcome": attempt.outcome,
                    **({"http.response.status_code": attempt.http_status} if attempt.http_status else {}),
                    **(
                        {"error.type": attempt.outcome} if attempt.outcome not in ("ok", "unfinished") else {}
                    ),
                },
                start_time=_ns(attempt.started_at),
            )
            child.end(end_time=_ns(attempt.started_at + timedelta(seconds=attempt.latency_s or 0.0)))
        if record.status not in ("ok", "cancelled"):
            span.set_status(Status(StatusCode.ERROR, record.error_message or record.status))
        span.end(end_time=_ns(ended))
        if record.kind == "chat":
            self._asking[record.model] = context


def get_traces() -> Traces:
    return session().part(Traces)
