"""Counting tokens, in one place: for trimming a conversation to a context window and for
the usage of a reply when the server reports none.

tiktoken is used when it is installed and its encoding can be loaded (it downloads encodings
on first use, which may be impossible offline); otherwise an estimate of four characters per
token. Either way the count is not the model's own tokenizer, so a count nbllm made is marked
as estimated wherever usage is shown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nbllm._constants import CHARS_PER_TOKEN, IMAGE_TOKENS_ESTIMATE, MESSAGE_FRAMING_TOKENS

Message = dict[str, Any]


def estimate_tokens(text: str) -> int:
    """Tokens in `text` by the four-characters rule (at least one for any text)."""
    return 0 if not text else max(1, round(len(text) / CHARS_PER_TOKEN))


@functools.lru_cache(maxsize=1)
def _tiktoken_encoder() -> Callable[[str], int] | None:
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]

        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:  # not installed, or the encoding cannot be fetched (offline)
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


@dataclass(frozen=True)
class TokenCounter:
    """Counts message tokens; `exact` is False when the counts are estimates."""

    count_text: Callable[[str], int]
    exact: bool

    def message(self, message: Message) -> int:
        content = message.get("content")
        total = MESSAGE_FRAMING_TOKENS
        if isinstance(content, str):
            total += self.count_text(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url":
                    total += IMAGE_TOKENS_ESTIMATE
                else:
                    total += self.count_text(str(part.get("text", "")))
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            total += self.count_text(function.get("name", "") + function.get("arguments", ""))
        thinking = message.get("reasoning_content")  # present only where it is sent back (DeepSeek)
        if isinstance(thinking, str):
            total += self.count_text(thinking)
        return total

    def messages(self, messages: Sequence[Message]) -> int:
        return sum(self.message(m) for m in messages)


def default_counter() -> TokenCounter:
    encoder = _tiktoken_encoder()
    if encoder is not None:
        return TokenCounter(encoder, exact=True)
    return TokenCounter(estimate_tokens, exact=False)
