"""Retry policy: which failures are retried, how long to wait, request-rate limits,
and the order in which fallback routes are tried.

Pure functions with the clock and the random source passed in, so tests state
delays as a table instead of sleeping.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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


class RateLimiter:
    """At most `rate` requests per second, shared by every call to one provider,
    from any thread or event loop: each caller reserves the next free slot."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = 1.0 / rate
        self._clock = clock
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve a slot; return how long the caller must wait before sending."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval_s
            return slot - now


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(provider: str, rate: float) -> RateLimiter:
    """The limiter shared by all calls to `provider` at `rate` requests per second."""
    with _limiters_lock:
        key = (provider, rate)
        if key not in _limiters:
            _limiters[key] = RateLimiter(rate)
        return _limiters[key]


def reset_limiters() -> None:
    """Forget every provider's rate limiter (a fresh session's state; used by tests)."""
    with _limiters_lock:
        _limiters.clear()


@dataclass(frozen=True)
class Route:
    """One model to try, with API7 ai-proxy-multi's priority (higher first) and weight."""

    model: str
    priority: int = 0
    weight: float = 1.0


def order_routes(routes: Sequence[Route], rng: Callable[[], float] = random.random) -> list[str]:
    """The order to try `routes`: by priority, highest first; within a priority, a weighted
    random order, so equal-priority entries share the load in proportion to their weights."""
    by_priority: dict[int, list[Route]] = {}
    for route in routes:
        by_priority.setdefault(route.priority, []).append(route)
    ordered: list[str] = []
    for priority in sorted(by_priority, reverse=True):
        pool = [r for r in by_priority[priority] if r.weight > 0]
        while pool:
            total = sum(r.weight for r in pool)
            point = rng() * total
            for index, route in enumerate(pool):
                point -= route.weight
                if point < 0 or index == len(pool) - 1:
                    ordered.append(pool.pop(index).model)
                    break
    return ordered


_ROUTE_SPEC = re.compile(r"^(?P<model>.+)@(?P<priority>-?\d+)(?::(?P<weight>\d+(?:\.\d+)?))?$")


def parse_routes(text: str | Sequence[str]) -> list[Route]:
    """``"a,b"`` or ``["a", "b@2", "c@1:3"]`` -> routes, written ``MODEL[@PRIORITY[:WEIGHT]]``.

    Bare entries keep their list order (earlier entries get a higher priority).
    An ``@`` not followed by a number is part of the model id (Vertex ids hold one).
    """
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    routes = []
    for position, item in enumerate(items):
        match = _ROUTE_SPEC.match(item)
        if match is None:
            routes.append(Route(item, priority=-position))
        else:
            weight = float(match["weight"] or 1.0)
            routes.append(Route(match["model"], int(match["priority"]), weight))
    return routes
