"""Telling text that could be a key, so that no message repeats it. People paste keys where
they do not belong (as a model name, a subcommand, an unquoted header value), and error
messages quote what they were given."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

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


MIN_SECRET_CHARS = 8
"""Shorter values are not masked (a local server's key "x" or "1234" would mask letters,
numbers and timestamps everywhere); registering one earns a warning (`auth.security_warnings`)."""

_WORD = "A-Za-z0-9"
_ELLIPSES = ("...", "\N{HORIZONTAL ELLIPSIS}")


def secret_forms(secret: str) -> list[str]:
    """The ways a secret shows up in what servers send back: as is, JSON-escaped (``\\/``),
    URL-encoded, and the partial forms servers print (its first characters then an ellipsis,
    or an ellipsis or stars then its last four)."""
    from urllib.parse import quote

    forms = {secret, secret.replace("/", "\\/"), quote(secret, safe="")}
    if len(secret) >= 12:
        for dots in (*_ELLIPSES, "*"):
            forms.add(secret[:8] + dots)
            forms.add(dots + secret[-4:])
    return sorted(forms, key=len, reverse=True)


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (in any of its `secret_forms`) replaced by ``****`` where it
    stands as a whole: at token boundaries, so "final" inside "finally", or a number inside a
    longer one, is never touched. The one masker of secret values: recordings, the cache, error
    texts and the engine's edge all use it."""
    for secret in sorted((s for s in secrets if len(s) >= MIN_SECRET_CHARS), key=len, reverse=True):
        if secret[:4] not in text and secret[-4:] not in text:
            continue  # the usual case: no trace of it, no regex
        for form in secret_forms(secret):
            if form in text:
                pattern = (
                    _boundary(form[0], "(?<![{w}])") + re.escape(form) + _boundary(form[-1], "(?![{w}])")
                )
                text = re.sub(pattern, MASK, text)
    return text


def _boundary(char: str, template: str) -> str:
    """A word boundary where the form starts (or ends) with a word character; none where it
    starts with an ellipsis or a star, which is a boundary of its own."""
    return template.format(w=_WORD) if char.isalnum() else ""


def mask_json(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (decoded JSON) with every secret masked in its strings (keys and values), never
    in its structure or its numbers."""
    if isinstance(value, str):
        return mask_values(value, secrets)
    if isinstance(value, list):
        return [mask_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {mask_values(str(k), secrets): mask_json(v, secrets) for k, v in value.items()}
    return value
