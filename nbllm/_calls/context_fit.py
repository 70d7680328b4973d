"""Will the prompt fit? Checked before a request is sent, against the model's declared context
window, with the best count there is.

Servers disagree about over-long prompts: llama-cpp-python streams an empty reply, LiteLLM in
front of it turns that into a plain stop, `transformers serve` runs for minutes with memory
climbing. Only a check before sending protects the user. The count: nbllm's own (tiktoken, or
4 characters a token) when it is clearly far from the window; otherwise the server's tokenizer
where the server has one (llama-cpp-python's ``/extras/tokenize``, llama.cpp's and vLLM's
``/tokenize``; which one works is learned once per provider); otherwise nbllm's count with a
margin, as an estimate can be well under the model's (1.8x for SmolLM2).
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit, urlunsplit

import httpx

from nbllm._calls.learned import learned
from nbllm._calls.pool import lease
from nbllm._calls.request import ChatRequest
from nbllm._calls.tokens import default_counter
from nbllm._constants import (
    CONTEXT_SUSPECT_FRACTION,
    ESTIMATE_MARGIN,
    MESSAGE_FRAMING_TOKENS,
    TOKENIZE_TIMEOUT_S,
)
from nbllm._exceptions import ContextTooLongError
from nbllm._providers.auth import auth_headers
from nbllm._providers.resolved import Resolved

TOKENIZE_PATHS = ("/extras/tokenize", "/tokenize")


async def check_fits(
    request: ChatRequest, resolved: Resolved, transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """Raise `ContextTooLongError` (nothing sent) when the prompt plus the reply's room does
    not fit `resolved`'s declared window. Models without a declared window are not checked."""
    window = resolved.spec.context_window
    if not window or not request.check_context:
        return
    reserve = request.max_tokens or 0
    counter = default_counter()
    counted = counter.messages(request.messages)
    if counted + reserve < window * CONTEXT_SUSPECT_FRACTION:
        return  # far from the limit: no exact count needed
    exact = await _server_count(request, resolved, transport)
    if exact is not None:
        prompt, how = exact, "counted by the server's tokenizer"
    elif counter.exact:
        prompt, how = counted, "counted with tiktoken"
    else:
        prompt, how = round(counted * ESTIMATE_MARGIN), f"estimated, with a {ESTIMATE_MARGIN:g}x margin"
    if prompt + reserve <= window:
        return
    room = f" plus {reserve:,} for the reply" if reserve else ""
    raise ContextTooLongError(
        f"the prompt is {prompt:,} tokens ({how}){room}, more than {resolved.qualified_name}'s "
        f"context window of {window:,}; nothing was sent",
        hint="shorten the prompt or the conversation (start over with --new), lower --max-tokens, "
        "or send it anyway with check_context=False (%%chat --no-check-context)",
    )


async def _server_count(
    request: ChatRequest, resolved: Resolved, transport: httpx.AsyncBaseTransport | None
) -> int | None:
    provider = resolved.provider
    if provider.is_azure:
        return None  # Azure OpenAI has no tokenizer endpoint
    parts = urlsplit(provider.url)
    origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    key = (provider.name, provider.url)
    paths_known = learned().tokenizer_paths
    paths = TOKENIZE_PATHS if key not in paths_known else (paths_known[key],)
    texts = [m.get("content") for m in request.messages]
    text = "\n".join(t for t in texts if isinstance(t, str))
    body = {"model": resolved.model, "input": text, "content": text, "prompt": text}
    for path in paths:
        if path is None:
            return None
        # A probe that fails in any way (no such path, a reply without `tokens`, a replaying
        # cassette without this request) is no count: the estimate stands. Cancellation passes.
        with contextlib.suppress(Exception):
            async with lease(provider, transport) as client:
                response = await client.post(
                    origin + path, json=body, headers=auth_headers(provider), timeout=TOKENIZE_TIMEOUT_S
                )
            if response.status_code == 200:
                payload = response.json()
                count = payload.get("count")
                tokens = len(payload["tokens"]) if count is None else int(count)
                paths_known[key] = path
                return tokens + MESSAGE_FRAMING_TOKENS * len(request.messages)
    paths_known[key] = None
    return None
