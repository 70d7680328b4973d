"""The one edge of the attempt engine: whatever an exception raised under it (transport, tape,
cache, cassette, pool, wire reader, decoder), the caller gets an nbllm error with the original
chained as ``__cause__``, and the call is recorded as failed.

The modules under the engine translate what they foresee themselves (an HTTP status, a
dropped connection, a bad event), with the words that help; this edge catches the rest, as
httpx's ``map_httpcore_exceptions`` does for httpcore. Only ``KeyboardInterrupt`` and
``asyncio.CancelledError`` (both ``BaseException``) pass through untranslated.
"""

from __future__ import annotations

import sqlite3
import ssl
from collections.abc import Iterable

import httpx

from nbllm._exceptions import APIConnectionError, APIError, APITimeoutError, NbllmError, UnexpectedError
from nbllm._providers.resolved import Resolved
from nbllm._providers.secret_registry import session_secrets
from nbllm._providers.secret_text import mask_secrets, mask_values

FOREIGN_ERRORS: tuple[tuple[type[BaseException], type[APIError], str, str], ...] = (
    # (raised type, nbllm error, what failed, the next step); the first match wins.
    (
        httpx.TimeoutException,
        APITimeoutError,
        "timed out",
        "raise the provider's --timeout, or check that the server is not overloaded",
    ),
    (
        httpx.TransportError,
        APIConnectionError,
        "lost its connection",
        "check that the server is running and reachable; the call can be retried",
    ),
    (
        ssl.SSLError,
        APIConnectionError,
        "failed in TLS",
        "check the server's certificate, or the provider's --ca-bundle",
    ),
    (
        sqlite3.Error,
        UnexpectedError,
        "failed in a local SQLite file (the response cache)",
        "another process may hold the file, or it is damaged: turn the cache off (%llm_cache off) "
        "or clear it, and run the cell again",
    ),
    (
        OSError,
        UnexpectedError,
        "failed on this machine (a file or a socket)",
        "check the cassette or cache path and the disk; the original error is chained (__cause__)",
    ),
    (
        Exception,
        UnexpectedError,
        "failed unexpectedly inside nbllm",
        "this is likely a bug in nbllm: the original error is chained (__cause__); please report it",
    ),
)


def translate(exc: Exception, resolved: Resolved, secrets: Iterable[str] = ()) -> NbllmError:
    """`exc` as nbllm's error: itself when it already is one, else the first `FOREIGN_ERRORS`
    row that matches, its message naming the original type and text with every secret in
    `secrets` (and anything that looks like a key) masked, and `exc` as its ``__cause__``. The
    caller raises it ``from error.__cause__``, which keeps an nbllm error's own cause."""
    if isinstance(exc, NbllmError):
        return exc
    for raised, error_type, what, hint in FOREIGN_ERRORS:
        if isinstance(exc, raised):
            detail = _masked(str(exc), secrets)
            shown = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            error = error_type(f"the call to {resolved.qualified_name} {what} ({shown})", hint=hint)
            error.__cause__ = exc
            return error
    raise AssertionError("FOREIGN_ERRORS ends with Exception")  # pragma: no cover


def _masked(text: str, secrets: Iterable[str]) -> str:
    """The one masker (every secret by value), then anything else that looks like a key."""
    text = mask_values(text, [*secrets, *_session_secrets_if_readable()])
    return mask_secrets(text, text.split())[:300]


def _session_secrets_if_readable() -> set[str]:
    """The session's secrets; none if the registry itself cannot be read (this is an error path)."""
    try:
        return session_secrets()
    except Exception:
        return set()
