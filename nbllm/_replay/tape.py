"""The hook every nbllm request passes through on its way to the network: an httpx transport
that hands the request to the active cassette or response cache (a `Tape`), or straight on.

Only nbllm's own clients carry it (see `nbllm._calls.pool`): nothing in httpx, or in any other
library the kernel has loaded, is patched. It wraps whichever transport httpx chose for the
URL, so ``HTTPS_PROXY`` and ``NO_PROXY`` keep working while a cassette records.

One cassette and one cache can be active at a time, for the whole session: the calls run on
nbllm's background event loop, where a context variable set in a notebook cell would not be
seen. A cassette, when active, answers first.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from typing_extensions import Self

from nbllm._session import session


class Tape(Protocol):
    """Something that answers requests from recordings, or records them."""

    async def handle(self, request: httpx.Request, inner: httpx.AsyncBaseTransport) -> httpx.Response:
        """The response to `request`: played back, or from `inner` (the network), recorded."""
        ...


class Switchable(abc.ABC):
    """A tape that takes its `slot` for a block (``with``) or for the session (`activate`),
    and gives the slot back to the tape it replaced when it stops (`deactivate`)."""

    slot: str
    _previous: Tape | None = None

    @abc.abstractmethod
    async def handle(self, request: httpx.Request, inner: httpx.AsyncBaseTransport) -> httpx.Response:
        """The response to `request` (see `Tape`)."""

    def activate(self) -> Self:
        """Answer nbllm's requests from now on, in place of the tape in the slot."""
        self._previous = use(self.slot, self)
        return self

    def deactivate(self) -> None:
        """Stop answering requests (the tape in the slot before this one, if any, is again)."""
        if active(self.slot) is self:
            use(self.slot, self._previous)
        self._previous = None

    def __enter__(self) -> Self:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()


@dataclass
class TapeSlots:
    """The session's active cassette and cache, by slot."""

    active: dict[str, Tape] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def use(slot: str, tape: Tape | None) -> Tape | None:
    """Make `tape` the active ``cassette`` or ``cache`` (None turns it off); returns the one
    it replaces."""
    slots = session().part(TapeSlots)
    with slots.lock:
        previous = slots.active.pop(slot, None)
        if tape is not None:
            slots.active[slot] = tape
        return previous


def active(slot: str) -> Tape | None:
    return session().part(TapeSlots).active.get(slot)


def _answering() -> Tape | None:
    active = session().part(TapeSlots).active
    return active.get("cassette") or active.get("cache")


class TapeTransport(httpx.AsyncBaseTransport):
    """`inner`, with the active tape (if any) in front of it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tape = _answering()
        if tape is None:
            return await self.inner.handle_async_request(request)
        return await tape.handle(request, self.inner)


class TapedClient(httpx.AsyncClient):
    """An httpx client whose every request goes through `TapeTransport`.

    httpx picks a transport per URL (a proxy's from the environment, or the default one);
    this puts the hook in front of its choice. `_transport_for_url` is httpx's own (stable
    since 0.18); `tests/test_cassettes.py` fails if it ever goes away."""

    def _transport_for_url(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        return TapeTransport(super()._transport_for_url(url))
