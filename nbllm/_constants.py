"""Tunable numbers, named with their unit. No logic lives here."""

from __future__ import annotations

CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a TCP/TLS connection to an endpoint."""

READ_TIMEOUT_S = 120.0
"""How long to wait between two reads of a response (a stalled stream ends after this)."""

MAX_RETRIES = 2
"""Retries after the first attempt for 408, 409, 429, 5xx, connect errors and timeouts."""

RETRY_AFTER_CEILING_S = 60.0
"""A server asking us to wait longer than this fails over (or fails, naming the wait)."""

BACKOFF_BASE_S = 0.5
"""First exponential-backoff delay; doubled on each further attempt."""

BACKOFF_MAX_S = 8.0
"""Largest exponential-backoff delay, before jitter."""

SUGGESTION_CUTOFF = 0.6
"""difflib similarity (0..1) above which an unknown model name earns a "did you mean"."""

MAX_SUGGESTIONS = 3
"""How many close names an unknown-model error lists at most."""

CONFIG_FILE_NAME = "providers.yaml"
"""File, inside the config directory, that `%llm_provider save` writes."""

CONFIG_DIR_ENV = "NBLLM_CONFIG_DIR"
"""Environment variable that overrides the platform config directory (tests use it)."""

KEYRING_SERVICE = "nbllm"
"""Service name under which keys are kept in the OS keyring."""

VERSION = "0.1.0"
"""The package version (sent in the User-Agent header)."""
