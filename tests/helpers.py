"""Constants and small stand-ins the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

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
