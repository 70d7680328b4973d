"""OpenAI's embeddings endpoint as the loopback server speaks it at ``/v1/embeddings``.

Each text gets a vector drawn from a hash of the text: the same text always gets the same
vector, different texts nearly orthogonal ones, each of unit length. Faults that make sense
for a whole JSON reply apply (status faults, ``reset``, ``stall``, ``malformed``,
``error_event``)."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbllm.testing.server import Fault, _Handler


def vector_for(text: str, dimensions: int) -> list[float]:
    """The unit vector the server answers `text` with (tests compare against it)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        # Four bytes a value, mapped to [-1, 1).
        values.extend(n / 2**31 - 1.0 for (n,) in struct.iter_unpack("<I", digest))
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def send_embeddings(handler: _Handler, body: Any, fault: Fault | None) -> None:
    """One vector per input text, OpenAI's shape; 400s as OpenAI words them for bad input."""
    state = handler.state
    if not isinstance(body, dict) or "input" not in body:
        handler._error(400, "'input' is a required property", "invalid_request_error")
        return
    given = body["input"]
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        message = "'input' should be a non-empty string or list of strings"
        handler._error(400, message, "invalid_request_error")
        return
    if any(not t for t in texts):
        handler._error(400, "'$.input' is invalid: input cannot be an empty string", "invalid_request_error")
        return
    dimensions = state.embedding_dimensions
    asked = body.get("dimensions")
    if asked is not None and state.honours_dimensions:
        if not isinstance(asked, int) or isinstance(asked, bool) or not 1 <= asked <= dimensions:
            message = f"dimensions should be between 1 and {dimensions}, not {asked!r}"
            handler._error(400, message, "invalid_request_error")
            return
        dimensions = asked
    if handler.whole_reply_fault(fault, b'{"data": [ not json'):
        return
    payload: dict[str, Any] = {
        "object": "list",
        "model": body.get("model", ""),
        "data": [
            {"object": "embedding", "index": i, "embedding": vector_for(text, dimensions)}
            for i, text in enumerate(texts)
        ],
    }
    if state.usage:
        tokens = sum(handler._token_count(t) for t in texts)
        payload["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    handler._send_json(200, payload)
