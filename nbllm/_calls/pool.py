"""The HTTP clients: one pooled `httpx.AsyncClient` per (event loop, provider), with
keep-alive, verifying certificates as the provider's network settings say (built once per
distinct setting, see `nbllm._providers.network`). Every client nbllm opens comes from here.
Proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``), never for this machine.

An httpx client belongs to the event loop it first ran on, so clients are kept per loop. A
loop's clients close when the loop shuts down its async generators (``asyncio.run``,
``asyncio.Runner`` and pytest-asyncio all do): a small generator started on the loop closes
them in its ``finally``. The kernel's loop and nbllm's background loop live as long as the
process. When a provider's settings change, the next call gets a new client and the old one
closes as soon as the calls still streaming through it are done.

A stream abandoned half-read (cancelled, or failed mid-reply) never goes back to the pool:
httpcore closes a connection whose response was not read to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import httpx

from nbllm._constants import KEEPALIVE_EXPIRY_S
from nbllm._providers.config import ProviderConfig
from nbllm._providers.network import LOOPBACK_NAMES
from nbllm._replay.tape import TapedClient


def timeouts(provider: ProviderConfig) -> httpx.Timeout:
    """The provider's connect and read timeouts (a write or a wait for a pooled connection
    counts as connecting or reading)."""
    return httpx.Timeout(
        connect=provider.connect_timeout_s,
        read=provider.read_timeout_s,
        write=provider.read_timeout_s,
        pool=provider.connect_timeout_s,
    )


LOOPBACK_PATTERNS = tuple(f"all://[{host}]" if ":" in host else f"all://{host}" for host in LOOPBACK_NAMES)
"""httpx mount patterns for this machine: mounted to no proxy (see `nbllm._providers.network`)."""


@dataclass
class _Entry:
    config: ProviderConfig
    transport: httpx.AsyncBaseTransport | None
    client: httpx.AsyncClient
    users: int = 0
    retired: bool = False


class _LoopClients:
    """The clients of one event loop, by provider name. Used only from that loop's thread."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.closer: AsyncGenerator[None, None] | None = None

    def entry_for(
        self, provider: ProviderConfig, transport: httpx.AsyncBaseTransport | None
    ) -> tuple[_Entry, _Entry | None]:
        """The provider's entry, and the one it replaces (if its settings changed), retired."""
        old = self.entries.get(provider.name)
        if (
            old is not None
            and old.transport is transport
            and (old.config is provider or old.config == provider)
        ):
            return old, None
        if old is not None:
            old.retired = True
        client = TapedClient(  # every request passes the cassette / cache hook
            timeout=timeouts(provider),
            transport=transport,
            verify=provider.network_trust().verify,
            proxy=provider.proxy_url(),
            # A server on this machine is never reached through a proxy from the environment.
            mounts=dict.fromkeys(LOOPBACK_PATTERNS),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
        )
        fresh = self.entries[provider.name] = _Entry(provider, transport, client)
        return fresh, old

    async def aclose(self) -> None:
        entries, self.entries = list(self.entries.values()), {}
        for entry in entries:
            await entry.client.aclose()


_POOLS: dict[asyncio.AbstractEventLoop, _LoopClients] = {}
_POOLS_LOCK = threading.Lock()


async def _close_at_loop_end(
    pool: _LoopClients, loop: asyncio.AbstractEventLoop
) -> AsyncGenerator[None, None]:
    """Suspended for the loop's whole life; `loop.shutdown_asyncgens()` resumes it into the
    ``finally``, which closes the loop's clients."""
    try:
        yield
    finally:
        with _POOLS_LOCK:
            _POOLS.pop(loop, None)
        await pool.aclose()


async def _clients_of_running_loop() -> _LoopClients:
    loop = asyncio.get_running_loop()
    with _POOLS_LOCK:
        pool = _POOLS.get(loop)
        if pool is not None:
            return pool
        # A loop closed without shutting down its generators keeps its entry; drop those
        # (their sockets close when collected; their loop can no longer run a clean close).
        for stale in [other for other in _POOLS if other.is_closed()]:
            del _POOLS[stale]
        pool = _POOLS[loop] = _LoopClients()
    closer = _close_at_loop_end(pool, loop)
    await closer.asend(None)  # started, so the loop finalizes it at shutdown
    pool.closer = closer
    return pool


@contextlib.asynccontextmanager
async def lease(
    provider: ProviderConfig, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The running loop's client for `provider`, held for one exchange."""
    pool = await _clients_of_running_loop()
    entry, replaced = pool.entry_for(provider, transport)
    if replaced is not None and replaced.users == 0:
        await replaced.client.aclose()
    entry.users += 1
    try:
        yield entry.client
    finally:
        entry.users -= 1
        if entry.retired and entry.users == 0:  # its provider changed while it streamed
            await entry.client.aclose()
