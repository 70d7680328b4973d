"""Constants and small stand-ins the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

SENTINEL_KEY = "NBLLM-TEST-KEY-7f3a9c41d2"
"""A key that must never appear in any output, error, repr or file."""


class FakeKeyring:
    """An in-memory stand-in for the ``keyring`` module's two calls we use."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def set_password(self, service: str, user: str, password: str) -> None:
        self.entries[(service, user)] = password

    def get_password(self, service: str, user: str) -> str | None:
        return self.entries.get((service, user))


def failed_cell(ip: Any, line: str, cell: str) -> str:
    """Run a ``%%chat`` that must fail: its one-line `UsageError`, then what it showed above
    (the error card), as one text for the test to search."""
    import pytest
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    with capture_output() as captured, pytest.raises(UsageError) as caught:
        ip.run_cell_magic("chat", line, cell)
    raised = str(caught.value)
    assert "\n" not in raised and len(raised) <= 120, raised  # one short line pointing at the card
    shown = captured.stdout + "".join(str(o.data.get("text/plain", "")) for o in captured.outputs)
    return f"{raised}\n{shown}"
