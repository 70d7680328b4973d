"""What calls learn about providers during a session, kept for the rest of it: an ``auto``
provider with no Responses API, the tokenize endpoint a server answers on (or that it has
none), a model whose server refused a JSON schema in ``response_format``. One object per
session (`nbllm._session`), so a concurrent call reads one consistent set of facts and a fresh
session starts knowing nothing."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from nbllm._session import session


@dataclass
class LearnedFacts:
    without_responses: set[tuple[str, str]] = field(default_factory=set)
    """(provider name, URL) of ``auto`` providers that answered 404/405/501 at ``/responses``."""
    tokenizer_paths: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """Per (provider, URL): the tokenize path that answered, or None when none does."""
    refused_schemas: set[str] = field(default_factory=set)
    """Models (qualified names) whose server refused a schema in ``response_format``."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def learned() -> LearnedFacts:
    """The running session's facts."""
    return session().part(LearnedFacts)
