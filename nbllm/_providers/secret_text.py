"""Telling text that could be a key, so that no message repeats it. People paste keys where
they do not belong (as a model name, a subcommand, an unquoted header value), and error
messages quote what they were given."""

from __future__ import annotations

import re
from collections.abc import Iterable

KEY_PREFIXES = ("sk-", "sk_", "pk-", "rk-", "gsk_", "hf_", "xai-", "ghp_", "github_pat_", "AIza", "AKIA")
_RUN = re.compile(r"[A-Za-z0-9_\-]{20,}")
MASK = "****"


def looks_like_key(text: str) -> bool:
    """A known key prefix, a ``Bearer`` token, or a run of 20 or more key characters that mixes
    upper case, lower case and digits (or 32 or more with digits, as hex keys are). Model ids
    such as ``gpt-4o-mini-2024-07-18`` or ``meta-llama/Llama-3.1-8B-Instruct`` do not qualify."""
    token = text.strip()
    if "bearer " in token.lower() or (token.startswith(KEY_PREFIXES) and len(token) >= 12):
        return True
    for run in _RUN.findall(token):
        digits = any(c.isdigit() for c in run)
        if digits and any(c.isupper() for c in run) and any(c.islower() for c in run):
            return True
        if digits and len(run) >= 32:
            return True
    return False


def mask_secrets(message: str, words: Iterable[str]) -> str:
    """`message` with every word that could be a key (or the value of an ``--option=value``
    word that could) replaced by ``****``."""
    for word in sorted(words, key=len, reverse=True):
        option, equals, value = word.partition("=")
        if equals and option.startswith("-") and looks_like_key(value):
            message = message.replace(value, MASK)
        elif looks_like_key(word):
            message = message.replace(word, MASK)
    return message
