"""Replies a server dropped to serve another request. llama-cpp-python's server, started with its
defaults (``--interrupt_requests True``), ends the reply in progress with ``[DONE]`` as soon as
another request arrives: sixteen calls at once came back as fifteen empty replies. Such a reply
shared its time with other requests to the provider (`ReplyState.crowded`) and has nothing in
it, or no finish reason. nbllm then sends the provider one request at a time for the rest of the
session (and says so once), and asks again once the provider is free, unless the consumer
already saw part of the reply (asking again would show it twice): that is an
`IncompleteStreamError` naming the flag."""

from __future__ import annotations

import warnings

from nbllm._calls.attempt import Again
from nbllm._calls.pacing import serve_one_at_a_time
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.results import StatusEvent
from nbllm._exceptions import IncompleteStreamError
from nbllm._providers.resolved import Resolved

SERVER_FLAG = (
    "llama-cpp-python's server drops a reply in progress when another request arrives unless it "
    "is started with --interrupt_requests False"
)


def dropped_for_another(state: ReplyState) -> bool:
    """Whether a reply that shared its time with other requests to its provider looks dropped
    for one of them: nothing in it, or an end marker without a finish reason."""
    if not state.crowded or state.finish_reason == "length":
        return False
    empty = not state.pieces and not state.tools.calls()
    return empty or (state.saw_done and state.finish_reason is None)


def ask_again_alone(resolved: Resolved, state: ReplyState) -> Again:
    """Learn one request at a time for the provider and ask again when it is free; raise when
    part of the reply was already shown."""
    provider = resolved.provider.name
    if serve_one_at_a_time(provider):
        warnings.warn(
            f"{resolved.qualified_name} dropped a reply to serve another request; nbllm now sends "
            f"provider {provider!r} one request at a time for this session ({SERVER_FLAG})",
            stacklevel=2,
        )
    if state.shown:
        raise IncompleteStreamError(
            f"{resolved.qualified_name} dropped this reply part-way to serve another request",
            hint=f"{SERVER_FLAG}; ask again: nbllm now sends this provider one request at a time",
            request_id=state.request_id,
        )
    return Again(
        StatusEvent("retry", "the server dropped this reply to serve another request; asking again alone"),
        "EmptyReplyError",
        "dropped for another request",
    )
