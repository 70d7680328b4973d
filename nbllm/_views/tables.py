"""Read-only views of the store for `%llm_provider list` and `show`.

They render themselves: HTML in a notebook, aligned text in a terminal. They
hold only what is safe to print: the key's *status*, never the key.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from nbllm._calls.history import CallRecord, ModelSummary
from nbllm._calls.results import format_cost
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
            window = f"{spec.context_window:,}" if spec.context_window else "?"
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
    "latency",
    "tokens",
    "thinking",
    "tok/s",
    "cost",
    "retries",
    "error",
)


def _trusted(config: ProviderConfig) -> str:
    """The certificates the provider trusts (for an https URL), or why its settings do not load."""
    if not config.url.startswith("https://"):
        return ""
    try:
        return config.network_trust().description
    except ConfigError as exc:
        return f"(does not load: {exc.message})"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def _tokens(record: CallRecord, mark: str) -> str:
    """Prompt+completion tokens; for an embeddings call, its input tokens and texts."""
    if record.kind == "embed":
        return f"{mark}{record.prompt_tokens} ({record.texts} texts embedded)"
    return f"{mark}{record.prompt_tokens}+{record.completion_tokens}"


def _thinking(record: CallRecord) -> str:
    """A reasoning model's share of the completion tokens, and how long it streamed thinking."""
    if not record.reasoning_tokens:
        return ""
    mark = "~" if record.reasoning_estimated else ""
    seconds = f" in {record.thinking_s:.1f} s" if record.thinking_s is not None else ""
    return f"{mark}{record.reasoning_tokens}{seconds}"


class HistoryTable:
    """Recent calls, newest last: what `%llm_history` shows. Records hold no prompts or keys."""

    def __init__(self, records: list[CallRecord], summaries: dict[str, ModelSummary] | None = None) -> None:
        self.records = records
        self.summaries = summaries or {}
        self._rows = [self._row(r) for r in records]
        self._headings: tuple[str, ...] = _HISTORY_HEADINGS
        if not any(r.cost is not None for r in records):  # the cost column only when one is known
            at = _HISTORY_HEADINGS.index("cost")
            self._headings = _HISTORY_HEADINGS[:at] + _HISTORY_HEADINGS[at + 1 :]
            self._rows = [row[:at] + row[at + 1 :] for row in self._rows]

    @staticmethod
    def _row(record: CallRecord) -> tuple[str, ...]:
        mark = "~" if record.tokens_estimated else ""
        speed = f"{record.tokens_per_s:.1f}" if record.tokens_per_s else ""
        error = f"{record.error_class}: {record.error_message}" if record.error_class else ""
        return (
            record.started_at.astimezone().strftime("%H:%M:%S"),
            record.model,
            record.status + (f" ({record.replayed})" if record.replayed else ""),
            _seconds(record.ttft_s),
            _seconds(record.latency_s),
            _tokens(record, mark),
            _thinking(record),
            speed,
            "" if record.cost is None else format_cost(record.cost, estimated=not record.cost_reported),
            str(record.retries) if record.retries else "",
            error[:120],
        )

    def _summary_lines(self) -> list[str]:
        lines = []
        for summary in self.summaries.values():
            line = f"{summary.model}: {_count(summary.calls, 'call')}, {_count(summary.errors, 'error')}"
            if summary.stopped:
                line += f", {summary.stopped} stopped"
            if summary.cost is not None:
                line += f", {format_cost(summary.cost, estimated=summary.cost_estimated)} in all"
            if summary.p50_latency_s is not None:
                line += f", latency p50 {summary.p50_latency_s:.2f} s / p95 {summary.p95_latency_s:.2f} s"
            lines.append(line)
        return lines

    def __repr__(self) -> str:
        if not self._rows:
            return "No calls yet. Run a %%chat cell, then %llm_history shows its timing here."
        return "\n".join([_text_table(self._rows, self._headings), "", *self._summary_lines()]).rstrip()

    def _repr_html_(self) -> str:
        if not self._rows:
            return f"<p>{html.escape(repr(self))}</p>"
        summary = "".join(f"<li>{html.escape(line)}</li>" for line in self._summary_lines())
        return _html_table(self._rows, self._headings) + (f"<ul>{summary}</ul>" if summary else "")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
