"""Read-only views of the store for `%llm_provider list` and `show`.

They render themselves: HTML in a notebook, aligned text in a terminal. They
hold only what is safe to print: the key's *status*, never the key.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from nbllm import _numbers as numbers
from nbllm._calls.history import CallRecord, ModelSummary
from nbllm._exceptions import ConfigError
from nbllm._providers.auth import key_status, mask_headers
from nbllm._providers.config import ProviderConfig
from nbllm._providers.urls import chat_url, models_url

SHIELD = "\N{SHIELD}"
DEFAULT_MARK = "\N{BLACK STAR}"


@dataclass(frozen=True)
class _Row:
    provider: str
    model: str
    context: str
    caps: str
    privacy: str
    key: str
    default: str
    price: str = ""


def _rows(providers: list[ProviderConfig], default: str | None) -> list[_Row]:
    rows = []
    for config in providers:
        status = key_status(config)
        shield = f"{SHIELD} private" if config.privacy else ""
        if not config.models:
            rows.append(_Row(config.name, "(no models)", "", "", shield, status, ""))
        for model_id, spec in config.models.items():
            mark = DEFAULT_MARK if default == f"{config.name}/{model_id}" else ""
            window = numbers.window(spec.context_window)
            caps = ", ".join(spec.capabilities.enabled())
            price = (
                f"${spec.price.input_per_million:g} / ${spec.price.output_per_million:g}"
                if spec.price
                else ""
            )
            rows.append(_Row(config.name, model_id, window, caps, shield, status, mark, price))
    return rows


_HEADINGS = (
    "provider",
    "model",
    "context",
    "capabilities",
    "privacy",
    "key",
    "default",
    "price in / out per M",
)


def _text_table(rows: list[tuple[str, ...]], headings: tuple[str, ...]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headings)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _html_table(rows: list[tuple[str, ...]], headings: tuple[str, ...]) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table class='nbllm-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class ProviderList:
    """Every provider and model, with the default marked."""

    def __init__(self, providers: list[ProviderConfig], default: str | None) -> None:
        rows = _rows(providers, default)
        # The price column only when some model has a price: most catalogs have none.
        columns = len(_HEADINGS) if any(r.price for r in rows) else len(_HEADINGS) - 1
        self._headings = _HEADINGS[:columns]
        self._rows = [tuple(vars(r).values())[:columns] for r in rows]

    def __repr__(self) -> str:
        if not self._rows:
            return "No providers registered. Add one with %llm_provider add NAME --url URL"
        return _text_table(self._rows, self._headings)

    def _repr_html_(self) -> str:
        if not self._rows:
            return f"<p>{html.escape(repr(self))}</p>"
        return _html_table(self._rows, self._headings)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class ProviderDetail:
    """One provider's settings and models."""

    def __init__(self, config: ProviderConfig, default: str | None) -> None:
        sample_model = next(iter(config.models), "<model>")
        self._title = config.name + (f"  {SHIELD} private" if config.privacy else "")
        rps = config.requests_per_second
        self._settings = [
            ("url", config.url),
            (
                "chat url",
                chat_url(
                    config.url, sample_model, auth=config.auth, api_version=config.api_version, api=config.api
                ),
            ),
            (
                "models url",
                models_url(config.url, auth=config.auth, api_version=config.api_version, api=config.api),
            ),
            ("api", API_TITLES[config.api]),
            ("auth", config.auth),
            ("key", key_status(config)),
            ("api version", config.api_version or ""),
            (
                "headers",
                ", ".join(f"{k}: {v}" for k, v in mask_headers(config.header_templates(), set()).items()),
            ),
            (
                "timeouts",
                f"connect {config.connect_timeout_s:g} s, read {config.read_timeout_s:g} s",
            ),
            ("rate limit", f"{rps:g} requests/s" if rps else "none"),
            ("reasoning style", config.reasoning_style or ""),
            ("trusts", _trusted(config)),
            ("proxy", config.proxy_shown() or ""),
            ("client cert", " + ".join(p for p in (config.client_cert, config.client_key) if p)),
            ("retries", str(config.retry.max_retries)),
            ("fallback", ", ".join(config.fallback)),
        ]
        self._settings = [(k, v) for k, v in self._settings if v]
        self._models = ProviderList([config], default)

    def __repr__(self) -> str:
        width = max(len(k) for k, _ in self._settings)
        lines = [self._title] + [f"  {k.ljust(width)}  {v}" for k, v in self._settings]
        return "\n".join(lines) + "\n\n" + repr(self._models)

    def _repr_html_(self) -> str:
        settings = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._settings
        )
        return (
            f"<h4>{html.escape(self._title)}</h4><table class='nbllm-settings'>{settings}</table>"
            + self._models._repr_html_()
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


API_TITLES = {
    "chat": "OpenAI Chat Completions",
    "responses": "OpenAI Responses",
    "auto": "OpenAI Responses, else Chat Completions",
    "anthropic": "Anthropic Messages",
}

_HISTORY_HEADINGS = (
    "time",
    "model",
    "status",
    "first token",
    "total",
    "in",
    "out",
    "thinking",
    "tok/s",
    "cost",
    "retries",
    "error",
)
_STATUS_COLOURS = {
    "ok": "#2e7d32",
    "error": "#d32f2f",
    "cancelled": "#757575",
    "incomplete": "#ef6c00",
    "denied": "#ef6c00",
}
_STATUS_WORDS = {"cancelled": "stopped"}
"""A call the user stopped is "stopped" in every view (the summary counts them so)."""
_ONE_LINE = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
_MODEL_WIDTH, _ERROR_WIDTH = "20em", "22em"


def error_summary(record: CallRecord) -> str:
    """The error in few words: "HTTP 500 · the server's message", or the kind of failure and
    its message when no HTTP status came; the model is in its own column."""
    message = record.error_message or ""
    for name in (record.model, record.requested):
        message = message.removeprefix(f"{name}: ")
    # The status the last attempt got, as it was recorded (not read back from the message).
    status = next((a.http_status for a in reversed(record.attempts) if a.http_status), None)
    if status is not None and status >= 400:
        message = message.removeprefix(f"HTTP {status}").lstrip(": ")
        return f"HTTP {status} \N{MIDDLE DOT} {message}".rstrip(" \N{MIDDLE DOT}")
    kind = (record.error_class or "").removesuffix("Error") or "error"
    return f"{kind} \N{MIDDLE DOT} {message}" if message else kind


def _trusted(config: ProviderConfig) -> str:
    """The certificates the provider trusts (for an https URL), or why its settings do not load."""
    if not config.url.startswith("https://"):
        return ""
    try:
        return config.network_trust().description
    except ConfigError as exc:
        return f"(does not load: {exc.message})"


def _seconds(value: float | None) -> str:
    return "" if value is None else numbers.seconds(value)


def _thinking(record: CallRecord) -> str:
    """A reasoning model's share of the completion tokens, and how long it streamed thinking."""
    if not record.reasoning_tokens:
        return ""
    took = f" in {numbers.seconds(record.thinking_s)}" if record.thinking_s is not None else ""
    return numbers.count(record.reasoning_tokens, estimated=record.reasoning_estimated) + took


def _cell(text: str, *, style: str = "", title: str | None = None, inner: str | None = None) -> str:
    tip = f" title='{html.escape(title, quote=True)}'" if title else ""
    return (
        f"<td style='text-align:left;{style}'{tip}>{inner if inner is not None else html.escape(text)}</td>"
    )


class HistoryTable:
    """Recent calls, newest last: what `%llm_history` and the panel show. One line per call:
    the model with its provider dimmed, tokens in and out, a coloured status, and the error
    in few words with its whole text in a tooltip. Records hold no prompts or keys."""

    def __init__(self, records: list[CallRecord], summaries: dict[str, ModelSummary] | None = None) -> None:
        self.records = records
        self.summaries = summaries or {}
        self._rows = [self._row(r) for r in records]
        self._headings: tuple[str, ...] = _HISTORY_HEADINGS
        self._shown = list(range(len(_HISTORY_HEADINGS)))
        if not any(r.cost is not None for r in records):  # the cost column only when one is known
            self._shown.remove(_HISTORY_HEADINGS.index("cost"))
        if not any(r.reasoning_tokens for r in records):
            self._shown.remove(_HISTORY_HEADINGS.index("thinking"))
        self._headings = tuple(_HISTORY_HEADINGS[i] for i in self._shown)
        self._rows = [tuple(row[i] for i in self._shown) for row in self._rows]

    @staticmethod
    def _row(record: CallRecord) -> tuple[str, ...]:
        estimated = record.tokens_estimated
        # A speed from estimated tokens would look measured: none is shown.
        speed = f"{record.tokens_per_s:.1f}" if record.tokens_per_s and not estimated else ""
        inputs = numbers.count(record.prompt_tokens, estimated=estimated)
        if record.kind == "embed":
            inputs += f" ({record.texts} texts embedded)"
        replied = record.kind == "chat" and (record.completion_tokens or record.status == "ok")
        outputs = numbers.count(record.completion_tokens, estimated=estimated) if replied else ""
        status = _STATUS_WORDS.get(record.status, record.status)
        if record.kind == "tool":  # a tool the model asked for: how it was allowed, and with what
            status = "denied" if record.status == "cancelled" else status
            inputs, outputs = "", "" if record.result_chars is None else f"{record.result_chars:,} chars"
        detail = error_summary(record) if record.error_class else ""
        if record.kind == "tool":
            detail = f"{record.approval} \N{MIDDLE DOT} {record.tool_arguments or ''}"
        return (
            record.started_at.astimezone().strftime("%H:%M:%S"),
            record.model,
            status + (f" ({record.replayed})" if record.replayed else ""),
            _seconds(record.ttft_s),
            _seconds(record.latency_s),
            inputs,
            outputs,
            _thinking(record),
            speed,
            "" if record.cost is None else numbers.cost(record.cost, estimated=not record.cost_reported),
            str(record.retries) if record.retries else "",
            detail,
        )

    def _summary_lines(self) -> list[str]:
        lines = []
        for summary in self.summaries.values():
            line = f"{summary.model}: {_count(summary.calls, 'call')}, {_count(summary.errors, 'error')}"
            if summary.stopped:
                line += f", {summary.stopped} stopped"
            if summary.cost is not None:
                line += f", {numbers.cost(summary.cost, estimated=summary.cost_estimated)} in all"
            if summary.p50_latency_s is not None and summary.p95_latency_s is not None:
                line += (
                    f", latency p50 {numbers.seconds(summary.p50_latency_s)}"
                    f" / p95 {numbers.seconds(summary.p95_latency_s)}"
                )
            lines.append(line)
        return lines

    def __repr__(self) -> str:
        if not self._rows:
            return "No calls yet. Run a %%chat cell, then %llm_history shows its timing here."
        return "\n".join([_text_table(self._rows, self._headings), "", *self._summary_lines()]).rstrip()

    def _html_row(self, row: tuple[str, ...]) -> str:
        cells = []
        for heading, text in zip(self._headings, row, strict=True):
            if heading == "model":
                provider, slash, model = text.partition("/")
                inner = (
                    f"<span style='opacity:0.6'>{html.escape(provider)}/</span>{html.escape(model)}"
                    if slash
                    else html.escape(text)
                )
                cells.append(
                    _cell(text, style=f"{_ONE_LINE};max-width:{_MODEL_WIDTH}", title=text, inner=inner)
                )
            elif heading == "status":
                colour = _STATUS_COLOURS.get(
                    next((k for k, v in _STATUS_WORDS.items() if text.startswith(v)), text.split(" ")[0]), ""
                )
                cells.append(_cell(text, style=f"white-space:nowrap;color:{colour};font-weight:bold"))
            elif heading == "error":
                cells.append(_cell(text, style=f"{_ONE_LINE};max-width:{_ERROR_WIDTH}", title=text or None))
            else:
                cells.append(_cell(text, style="white-space:nowrap"))
        return "<tr>" + "".join(cells) + "</tr>"

    def _repr_html_(self) -> str:
        if not self._rows:
            return f"<p>{html.escape(repr(self))}</p>"
        head = "".join(
            f"<th style='text-align:left;white-space:nowrap'>{html.escape(h)}</th>" for h in self._headings
        )
        body = "".join(self._html_row(row) for row in self._rows)
        table = f"<table class='nbllm-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        summary = "".join(f"<li>{html.escape(line)}</li>" for line in self._summary_lines())
        return table + (f"<ul>{summary}</ul>" if summary else "")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
