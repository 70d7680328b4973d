from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nbllm import RetryPolicy
from nbllm._calls.pacing import RateLimiter
from nbllm._calls.retry import parse_retry_after, retry_decision
from nbllm._calls.routes import Route, order_routes, parse_routes

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
POLICY = RetryPolicy(max_retries=3, retry_after_ceiling_s=60, backoff_base_s=0.5, backoff_max_s=4)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),
        ({"Retry-After": "Sat, 21 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Sat, 21 Nov 2026 11:59:00 GMT"}, 0.0),
        ({"Retry-After": "whenever"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


# attempt x Retry-After x ceiling; rng fixed at 0 (no jitter) and 1 (most jitter: -25%)
@pytest.mark.parametrize(
    ("attempt", "retry_after", "rng", "retry", "wait"),
    [
        (1, None, 0.0, True, 0.5),
        (2, None, 0.0, True, 1.0),
        (3, None, 0.0, True, 2.0),
        (3, None, 1.0, True, 1.5),
        (4, None, 0.0, False, 0.0),  # max_retries=3: the 4th failure is final
        (1, 7.0, 0.0, True, 7.0),  # Retry-After honoured exactly, no jitter
        (2, 0.0, 1.0, True, 0.0),
        (1, 60.0, 0.0, True, 60.0),  # at the ceiling: still waits
        (1, 61.0, 0.0, False, 61.0),  # past the ceiling: fail over / fail, naming the wait
        (4, 1.0, 0.0, False, 0.0),
    ],
)
def test_retry_decisions(
    attempt: int, retry_after: float | None, rng: float, retry: bool, wait: float
) -> None:
    decision = retry_decision(attempt, POLICY, retry_after, rng=lambda: rng)
    assert (decision.retry, decision.wait_s) == (retry, pytest.approx(wait))


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, backoff_base_s=1, backoff_max_s=4)
    assert retry_decision(8, policy, rng=lambda: 0.0).wait_s == 4


def test_ceiling_reason_names_the_wait() -> None:
    assert "120 s" in retry_decision(1, POLICY, 120.0).reason


def test_rate_limiter_spaces_requests() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=4, clock=lambda: now[0])
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.25, 0.5]
    now[0] = 101.0  # idle time is not banked into a burst
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == 0.25


def test_routes_by_priority_then_weight() -> None:
    routes = [Route("a", 0, 1), Route("b", 5, 1), Route("c", 0, 3)]
    assert order_routes(routes, rng=lambda: 0.0) == ["b", "a", "c"]
    assert order_routes(routes, rng=lambda: 0.99) == ["b", "c", "a"]


def test_weights_share_load() -> None:
    import random

    rng = random.Random(7)
    firsts = [order_routes([Route("a", 0, 1), Route("b", 0, 3)], rng=rng.random)[0] for _ in range(4000)]
    share_b = firsts.count("b") / len(firsts)
    assert 0.70 < share_b < 0.80


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b", [Route("a", 0), Route("b", -1)]),
        ("x/y:7b@2:3, z", [Route("x/y:7b", 2, 3.0), Route("z", -1)]),
        ("claude-3-5-sonnet@20240620x", [Route("claude-3-5-sonnet@20240620x", 0)]),
    ],
)
def test_parse_routes(text: str, expected: list[Route]) -> None:
    assert parse_routes(text) == expected
