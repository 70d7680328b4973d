"""Retry policy: which failures are retried and how long to wait (request-rate limits live in
`nbllm._calls.pacing`, fallback routes in `nbllm._calls.routes`).

Pure functions with the clock and the random source passed in, so tests state
delays as a table instead of sleeping.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from nbllm._providers.config import RetryPolicy

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""Plus every 5xx. Every other 4xx fails fast: repeating it cannot help."""


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def is_fallback_status(status: int) -> bool:
    """Failures another model may not share: rate limits, server faults, timeouts."""
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The wait a server asks for, in seconds: ``retry-after-ms``, then ``Retry-After``
    as seconds or as an HTTP date. None when absent or unreadable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    reference = now or datetime.now(timezone.utc)
    return max(0.0, (when - reference).total_seconds())


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    wait_s: float
    reason: str


def retry_decision(
    attempt: int,
    policy: RetryPolicy,
    retry_after_s: float | None = None,
    rng: Callable[[], float] = random.random,
) -> RetryDecision:
    """Whether to retry after failed attempt number `attempt` (1-based), and after how long.

    A server's Retry-After is honoured exactly; past the policy's ceiling the
    call does not wait (it fails over or fails, naming the wait). Without one,
    the wait is exponential backoff with up to 25% jitter subtracted, so that
    clients that failed together do not retry together.
    """
    if attempt > policy.max_retries:
        return RetryDecision(False, 0.0, f"gave up after {attempt} attempts")
    if retry_after_s is not None:
        if retry_after_s > policy.retry_after_ceiling_s:
            return RetryDecision(
                False,
                retry_after_s,
                f"the server asks to wait {retry_after_s:.0f} s, more than the "
                f"{policy.retry_after_ceiling_s:.0f} s ceiling",
            )
        return RetryDecision(True, retry_after_s, f"the server asks to wait {retry_after_s:g} s")
    backoff = min(policy.backoff_base_s * 2.0 ** (attempt - 1), policy.backoff_max_s)
    return RetryDecision(True, backoff * (1.0 - 0.25 * rng()), "backoff")
