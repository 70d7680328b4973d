"""The panel's form pieces that carry rules of their own: the write-only key field, the
headers text (literal secrets masked, kept when left alone), optional numbers, and
`run_soon`, which runs a button's network call without blocking the kernel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import ipywidgets as widgets
from pydantic import SecretStr
from traitlets import Unicode

from nbllm._calls.loop_thread import loop_thread
from nbllm._exceptions import ConfigError
from nbllm._providers.config import ProviderConfig

T = TypeVar("T")

SECRET_MASK = "********"
"""Shown for a header value that holds a literal secret; left as is, the value is kept."""


def run_soon(coro: Coroutine[Any, Any, T], done: Callable[[T | None, BaseException | None], None]) -> None:
    """Run `coro` without blocking the kernel, then call ``done(value, error)``.

    In a kernel, a button's handler runs on the kernel's event loop: the coroutine
    becomes a task there, so the kernel keeps serving cells and widget messages
    meanwhile, and `done` runs on the same thread. With no running loop (tests,
    plain Python) it runs to completion on nbllm's background loop first.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            value = loop_thread().run(coro)
        except Exception as exc:  # handed to `done`, which reports it in the panel
            done(None, exc)
        else:
            done(value, None)
        return

    def finished(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done(None, asyncio.CancelledError())
        elif task.exception() is not None:
            done(None, task.exception())
        else:
            done(task.result(), None)

    loop.create_task(coro).add_done_callback(finished)


class KeyField(widgets.Password):  # type: ignore[misc]
    """A password field whose value is never echoed back to the front end (ipywidgets 8
    otherwise sends every value it receives back to all views)."""

    value = Unicode("", help="The key as typed; cleared once stored.").tag(sync=True, echo_update=False)


def header_lines(config: ProviderConfig) -> str:
    """Headers as ``Name: value`` lines; literal secrets are masked."""
    secret = config.unsaved_headers()
    return "\n".join(
        f"{name}: {SECRET_MASK if name in secret else value}"
        for name, value in config.header_templates().items()
    )


def parse_header_lines(text: str, config: ProviderConfig) -> dict[str, SecretStr]:
    """The inverse of `header_lines`; a masked value keeps the provider's current secret."""
    current = config.headers
    headers: dict[str, SecretStr] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            # The line is not echoed: a mistyped header may well hold a token.
            raise ConfigError(
                f"header line {number} should be 'Name: value', e.g. HTTP-Referer: https://me.example"
            )
        name, value = name.strip(), value.strip()
        if value == SECRET_MASK and name in current:
            headers[name] = current[name]
        else:
            headers[name] = SecretStr(value)
    return headers


def optional_float(text: str, what: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} should be a number, e.g. 2, or blank for no limit") from None
