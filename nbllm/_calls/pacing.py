"""Pacing shared by every call to one provider: the provider's own request rate (``--rps``),
the requests in flight, requests and tokens per minute a batch run sets (``nbllm.map(
concurrency=, rpm=, tpm=)``) and the pause a 429 asks for.

A batch run's budgets are registered on the provider for as long as the run lasts, so a
``%%chat`` cell sent meanwhile waits like one more row. A 429 pauses the whole
provider for the time the server asked (or the backoff), so a hundred rows in flight do not
each retry into the same limit. A provider whose server aborts a reply when another request
arrives (llama-cpp-python's default ``--interrupt_requests True``) is learned to take one
request at a time (`serve_one_at_a_time`) for the rest of the session.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nbllm._session import session


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


def limiter_for(provider: str, rate: float) -> RateLimiter:
    """The limiter shared by all calls to `provider` at `rate` requests per second."""
    pacing = session().part(ProviderPacing)
    with pacing.lock:
        key = (provider, rate)
        if key not in pacing.limiters:
            pacing.limiters[key] = RateLimiter(rate)
        return pacing.limiters[key]


WINDOW_S = 60.0
"""Tokens per minute are counted over a sliding minute."""
SLOT_POLL_S = 0.01
"""How often a call waiting for an in-flight slot looks again."""
REQUEST_PACE_MARGIN = 1.005
"""Requests go a hair slower than the budget, so a server counting a sliding minute never
sees one more than allowed when a request is delayed and the next is not."""


class TokenWindow:
    """At most `per_minute` tokens sent in any sliding minute. A reservation holds its
    estimate until `settle` corrects it with the tokens the call really used."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._entries: list[list[float]] = []  # [send time, tokens], by send time
        self._lock = threading.Lock()

    def reserve(self, tokens: int) -> tuple[float, list[float]]:
        """Book `tokens` at the earliest time they fit; return the wait and the booking."""
        with self._lock:
            now = self._clock()
            self._entries = [e for e in self._entries if e[0] > now - WINDOW_S]
            used = sum(e[1] for e in self._entries)
            at = now
            for entry in self._entries:  # the oldest expire first
                if used + tokens <= self.per_minute:
                    break
                used -= entry[1]
                at = max(at, entry[0] + WINDOW_S)
            booking = [at, float(tokens)]
            bisect.insort(self._entries, booking)
            return at - now, booking

    def settle(self, booking: list[float], tokens: int) -> None:
        """Replace a booking's estimate with the tokens the call used."""
        with self._lock:
            booking[1] = float(tokens)


@dataclass
class Slots:
    """At most `limit` requests in flight at once (counted under the pacer's lock, so calls on
    any thread or event loop share it)."""

    limit: int
    used: int = 0


@dataclass
class Pacer:
    """One provider's shared pacing state."""

    held_until: float = 0.0
    """Monotonic time before which nothing is sent (a 429's pause)."""
    request_budgets: list[RateLimiter] = field(default_factory=list)
    token_budgets: list[TokenWindow] = field(default_factory=list)
    slot_budgets: list[Slots] = field(default_factory=list)
    sending: int = 0
    """Requests to the provider in flight now, from every call."""
    sent: int = 0
    """Requests to the provider so far (to tell whether one started while another was in flight)."""
    one_at_a_time: bool = False
    """Learned: the server drops a reply in progress when another request arrives."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, seconds: float) -> None:
        """Send nothing for `seconds` (a later pause never shortens an earlier one)."""
        with self.lock:
            self.held_until = max(self.held_until, time.monotonic() + seconds)

    def held_for(self) -> float:
        return max(0.0, self.held_until - time.monotonic())


@dataclass
class ProviderPacing:
    """The session's pacers (by provider) and request-rate limiters (by provider and rate)."""

    pacers: dict[str, Pacer] = field(default_factory=dict)
    limiters: dict[tuple[str, float], RateLimiter] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def pacer_for(provider: str) -> Pacer:
    pacing = session().part(ProviderPacing)
    pacer = pacing.pacers.get(provider)  # every call asks: no lock, no new object once it exists
    if pacer is None:
        with pacing.lock:
            pacer = pacing.pacers.setdefault(provider, Pacer())
    return pacer


@dataclass
class Booking:
    """When a request may go, and the token booking to settle once its usage is known."""

    wait_s: float
    bookings: list[tuple[TokenWindow, list[float]]]

    def settle(self, tokens: int) -> None:
        for window, booking in self.bookings:
            window.settle(booking, tokens)


NO_BOOKING = Booking(0.0, [])


def book_request(
    provider: str, requests_per_second: float | None, tokens: Callable[[], int] | None = None
) -> Booking:
    """Book one request against every limit on `provider`; `tokens` estimates its size, and is
    asked only when a token budget is set (counting a prompt's tokens is not free)."""
    pacer = pacer_for(provider)
    if not (requests_per_second or pacer.request_budgets or pacer.token_budgets or pacer.held_until):
        return NO_BOOKING  # the usual call: nothing to wait for, nothing to settle
    waits = [pacer.held_for()]
    if requests_per_second:
        waits.append(limiter_for(provider, requests_per_second).reserve())
    with pacer.lock:
        budgets, windows = list(pacer.request_budgets), list(pacer.token_budgets)
    waits += [limiter.reserve() for limiter in budgets]
    size = tokens() if windows and tokens is not None else 0
    bookings = [(window, window.reserve(size)[1]) for window in windows]
    now = time.monotonic()
    waits += [booking[0] - now for _, booking in bookings]
    return Booking(max(waits), bookings)


def in_flight(provider: str) -> InFlightSlot:
    """One in-flight request to `provider`: counted while it lasts, and waiting first for a free
    slot while a batch run sets some, or for the provider to be idle once it takes one request
    at a time."""
    return InFlightSlot(pacer_for(provider))


def serve_one_at_a_time(provider: str) -> bool:
    """From now on send `provider` one request at a time; True the first time (to say so once)."""
    pacer = pacer_for(provider)
    with pacer.lock:
        first, pacer.one_at_a_time = not pacer.one_at_a_time, True
    return first


class InFlightSlot:
    """Holds one request's place among the provider's requests in flight. `crowded` says, once
    it is released, whether another request to the provider started while this one was in
    flight, or was still in flight when it ended."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.taken: list[Slots] = []
        self.number = 0
        self.crowded = False

    async def __aenter__(self) -> InFlightSlot:
        pacer = self.pacer
        while True:
            with pacer.lock:
                budgets = pacer.slot_budgets
                free = all(slots.used < slots.limit for slots in budgets) if budgets else True
                if free and not (pacer.one_at_a_time and pacer.sending):
                    for slots in budgets:
                        slots.used += 1
                    self.taken = list(budgets)
                    pacer.sending += 1
                    pacer.sent += 1
                    self.number = pacer.sent
                    return self
            # Waiting is rare (a cell's call while a run fills every slot), so a short poll
            # beats a condition shared across threads and event loops.
            await asyncio.sleep(SLOT_POLL_S)

    async def __aexit__(self, *exc: object) -> None:
        with self.pacer.lock:
            self.crowded = self.pacer.sending > 1 or self.pacer.sent != self.number
            self.pacer.sending -= 1
            for slots in self.taken:
                slots.used -= 1


@contextmanager
def budgets(provider: str, concurrency: int | None, rpm: float | None, tpm: int | None) -> Iterator[None]:
    """Hold every call to `provider` to `concurrency` requests in flight, `rpm` requests and
    `tpm` tokens a minute while inside."""
    pacer = pacer_for(provider)
    added: list[tuple[list[Any], Any]] = []  # (the pacer's list, the budget put in it)
    if concurrency:
        added.append((pacer.slot_budgets, Slots(concurrency)))
    if rpm:
        added.append((pacer.request_budgets, RateLimiter(rpm / 60.0 / REQUEST_PACE_MARGIN)))
    if tpm:
        added.append((pacer.token_budgets, TokenWindow(tpm)))
    with pacer.lock:
        for budgets_of_a_kind, budget in added:
            budgets_of_a_kind.append(budget)
    try:
        yield
    finally:
        with pacer.lock:
            for budgets_of_a_kind, budget in added:
                budgets_of_a_kind.remove(budget)
