"""`%%chat --dry-run`: the exact request a cell would send, shown instead of sent.

It shows the final messages after trimming, their token count, what trimming
dropped, and the URL, headers (every secret masked) and JSON body. Image data is
abbreviated; nothing is sent and nothing is recorded.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from dataclasses import dataclass
from typing import Any

from nbllm._calls.protocol_choice import prepare
from nbllm._cells.cell import PreparedCell
from nbllm._cells.summaries import ContextPart
from nbllm._exceptions import MissingKeyError

_DATA_URL = re.compile(r"data:(image/[\w.+-]+);base64,([A-Za-z0-9+/=]+)")


def _abbreviate_images(text: str) -> str:
    return _DATA_URL.sub(
        lambda m: f"data:{m.group(1)};base64,\N{HORIZONTAL ELLIPSIS} ({len(m.group(2))} chars)", text
    )


def context_lines(parts: tuple[ContextPart, ...] | list[ContextPart]) -> list[str]:
    """One line per placeholder: what it put in, as what, and about how many tokens."""
    if not parts:
        return []
    lines = [f"Context from the notebook ({len(parts)} part{'s' if len(parts) != 1 else ''}):"]
    for part in parts:
        size = f"~{part.tokens:,} tokens" if part.text else "sent as an image part"
        label = part.name if part.name.startswith("--") else f"{{{part.name}}}"
        lines.append(f"  {label}: {part.kind}, {size}")
    return lines


@dataclass(frozen=True)
class ContextShown:
    """``--show-context``: each placeholder's part, as the model receives it, above the reply."""

    parts: tuple[ContextPart, ...]

    def __str__(self) -> str:
        blocks = context_lines(self.parts)
        for part in self.parts:
            if part.text:
                blocks += [
                    "",
                    f"{part.name}:" if part.name.startswith("--") else f"{{{part.name}}}:",
                    part.text,
                ]
        return "\n".join(blocks)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_markdown_(self) -> str:
        lines = context_lines(self.parts)
        body = [f"**{html.escape(lines[0])}**"] if lines else []
        for part, line in zip(self.parts, lines[1:], strict=True):
            fence = "~~~~" if "~~~" not in part.text else "`````"
            text = f"\n\n{fence}\n{part.text}\n{fence}\n" if part.text else ""
            body.append(f"<details><summary>{html.escape(line.strip())}</summary>{text}</details>")
        return "\n\n".join(body)


@dataclass(frozen=True)
class DryRun:
    model: str
    url: str
    headers: dict[str, str]
    body_json: str
    messages: list[dict[str, Any]]
    summary: str
    dropped: list[dict[str, Any]]
    fits: bool
    tools: list[str]
    key_note: str | None = None
    context: tuple[ContextPart, ...] = ()

    @classmethod
    def of(cls, prepared: PreparedCell) -> DryRun:
        request = prepared.request(prepared.plan.messages, with_tools=True)
        key_note = None
        try:
            built = prepare(prepared.resolved, request)
        except MissingKeyError as exc:  # still show the request; say why it would fail
            key_note = str(exc)
            anonymous = dataclasses.replace(
                prepared.resolved, provider=prepared.resolved.provider.replace(auth="none")
            )
            built = prepare(anonymous, request)
        url, body = built.shown()
        return cls(
            model=prepared.resolved.qualified_name,
            url=url,
            headers=built.masked_headers(),
            body_json=_abbreviate_images(json.dumps(body, indent=2, ensure_ascii=False)),
            messages=prepared.plan.messages,
            summary=prepared.plan.summary(),
            dropped=prepared.plan.dropped,
            fits=prepared.plan.fits,
            tools=list(prepared.tools),
            key_note=key_note,
            context=tuple(prepared.context),
        )

    def _message_lines(self) -> list[str]:
        lines = []
        for message in self.messages:
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            if message.get("tool_calls"):
                text = (text or "") + " [tool calls: " + json.dumps(message["tool_calls"]) + "]"
            lines.append(f"{message['role']}: {_abbreviate_images(text or '')}")
        return lines

    def _facts(self) -> list[str]:
        facts = [f"Dry run for {self.model}: nothing was sent.", self.summary + "."]
        if not self.fits:
            facts.append(
                "The newest message alone does not fit the context window: the server will likely "
                "refuse it. Shorten the prompt, lower --max-tokens, or check the window."
            )
        if self.tools:
            facts.append("Tools: " + ", ".join(self.tools) + ".")
        if self.key_note:
            facts.append(f"No key would be sent: {self.key_note.splitlines()[0]}")
        facts += context_lines(self.context)
        return facts

    def __str__(self) -> str:
        lines = self._facts() + ["", "Messages:"] + [f"  {line}" for line in self._message_lines()]
        if self.dropped:
            lines.append(f"Dropped ({len(self.dropped)} messages, oldest first):")
            lines += [f"  {m['role']}: {str(m.get('content'))[:120]}" for m in self.dropped]
        lines += ["", f"POST {self.url}"] + [f"{k}: {v}" for k, v in self.headers.items()]
        lines += ["", self.body_json]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<DryRun {self.model} POST {self.url}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        facts = "".join(f"<p>{html.escape(f)}</p>" for f in self._facts())
        messages = "\n".join(self._message_lines())
        dropped = ""
        if self.dropped:
            items = "\n".join(f"{m['role']}: {str(m.get('content'))[:120]}" for m in self.dropped)
            dropped = f"<p>Dropped, oldest first:</p><pre>{html.escape(items)}</pre>"
        request = "\n".join([f"POST {self.url}"] + [f"{k}: {v}" for k, v in self.headers.items()])
        return (
            f"<div class='nbllm-dry-run'>{facts}<p>Messages:</p><pre>{html.escape(messages)}</pre>"
            f"{dropped}<p>Request:</p><pre>{html.escape(request)}\n\n{html.escape(self.body_json)}</pre></div>"
        )
