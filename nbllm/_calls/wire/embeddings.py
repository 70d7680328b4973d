"""OpenAI embeddings (``POST .../embeddings``): the request for one batch of texts, and the
reply read into one vector per text, checked before anyone computes with it.

Every server that serves embeddings here speaks this shape, whatever protocol its chat uses
(an Anthropic-compatible endpoint has none). Servers differ in ways that would otherwise
give wrong numbers quietly: llama-cpp-python answers a model without pooling with one vector
per token; llama.cpp's llama-server ignores ``dimensions``; a gateway may answer base64."""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from typing import Any

from nbllm._calls.errors import clip, upstream_message
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import PreparedRequest
from nbllm._calls.wire.headers import request_headers
from nbllm._exceptions import ProtocolError, StreamError
from nbllm._providers.resolved import Resolved
from nbllm._providers.urls import embeddings_url

MAX_TOKEN_COUNT = 10**9
"""Token counts above this are not counts."""

Vector = list[float]

NOT_EMBEDDINGS = "the server is not speaking OpenAI's embeddings format"


def prepare(resolved: Resolved, texts: list[str], dimensions: int | None) -> PreparedRequest:
    """The exact request for one batch. ``encoding_format`` is left to its default (floats), so
    servers that refuse unknown fields take the request."""
    provider = resolved.provider
    url = embeddings_url(
        provider.wire_url(), resolved.model, auth=provider.auth, api_version=provider.api_version
    )
    shown = embeddings_url(provider.url, resolved.model, auth=provider.auth, api_version=provider.api_version)
    headers, secrets = request_headers(provider, stream=False)
    body: dict[str, Any] = {"model": resolved.model, "input": texts}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return PreparedRequest(url, headers, body, secrets, shown_url=shown)


def read_vectors(
    payload: Any, count: int, dimensions: int | None, resolved: Resolved, state: ReplyState
) -> tuple[list[Vector], int | None]:
    """The batch's vectors in the order of its texts, and the input tokens the server counted
    (None when it sent no count). Raises `ProtocolError` for a reply that is not one vector of
    finite numbers per text, all of one length."""
    model = resolved.qualified_name

    def wrong(what: str, hint: str = NOT_EMBEDDINGS) -> ProtocolError:
        return ProtocolError(f"{model} {what}", hint=hint, request_id=state.request_id)

    if isinstance(payload, dict) and "error" in payload and "data" not in payload:
        upstream = upstream_message(payload) or "(no message)"
        raise StreamError(
            f"{model} answered the embeddings request with an error: {upstream}",
            hint="see the server's message; its log may say more",
            upstream_message=upstream,
            request_id=state.request_id,
            body=payload,
        )
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise wrong("sent an embeddings reply without a 'data' list")
    if len(data) != count:
        raise wrong(f"sent {len(data)} vectors for {count} texts")
    vectors: list[Vector | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise wrong(f"sent an embeddings entry that is not an object: {clip(repr(item), 80)}")
        index = item.get("index", position)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise wrong(f"sent an embedding with index {clip(repr(index), 40)} for a batch of {count}")
        if vectors[index] is not None:
            raise wrong(f"sent two embeddings for text {index} of the batch")
        vectors[index] = _vector(item.get("embedding"), wrong)
    done = [v for v in vectors if v is not None]  # every index was filled: len(data) == count
    lengths = {len(v) for v in done}
    if len(lengths) > 1:
        raise wrong(f"sent vectors of different lengths ({', '.join(map(str, sorted(lengths)))})")
    got = lengths.pop() if lengths else 0
    if got == 0:
        raise wrong("sent empty vectors")
    if dimensions is not None and got != dimensions:
        raise wrong(
            f"sent {got}-dimensional vectors although {dimensions} dimensions were asked for: the "
            "server ignores 'dimensions'",
            hint="leave out dimensions=; to shorten vectors yourself, keep the first N values and "
            "normalise again (meaningful only for models trained for it, such as OpenAI's text-embedding-3)",
        )
    return done, _input_tokens(payload.get("usage"))


def _vector(value: Any, wrong: Any) -> Vector:
    if isinstance(value, str):  # base64 of little-endian float32, as OpenAI sends on request
        try:
            floats = array.array("f", base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise wrong("sent an embedding string that is not base64 of 32-bit floats") from None
        if sys.byteorder == "big":
            floats.byteswap()
        vector = floats.tolist()
    elif isinstance(value, list):
        vector = value
    else:
        raise wrong(f"sent an embedding that is {type(value).__name__}, not a list of numbers")
    if vector and isinstance(vector[0], list):
        raise wrong(
            f"sent {len(vector)} vectors for one text (one per token) instead of one: the model "
            "has no pooling",
            hint="serve an embedding model (its GGUF names a pooling type), or a server that pools: "
            "llama.cpp's llama-server --embeddings --pooling mean. llama-cpp-python cannot set pooling "
            "for a chat model such as SmolLM2",
        )
    try:
        # One C-speed pass checks both: sum() refuses anything but numbers, and the total is
        # NaN or infinite when any value is (or when they overflow, which is no vector either).
        total = sum(vector)
    except TypeError:
        odd = next(x for x in vector if not isinstance(x, int | float))
        raise wrong(f"sent an embedding holding {clip(repr(odd), 40)}, not only numbers") from None
    if not math.isfinite(total):
        raise wrong("sent an embedding holding NaN or infinity")
    return vector


def _input_tokens(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    value = usage.get("prompt_tokens", usage.get("total_tokens"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        return None
    return value
