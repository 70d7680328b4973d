"""A loopback OpenAI-compatible server for tests, tutorials and benchmarks.

A real HTTP stack (the standard library's threading HTTP server) with scripted
replies, token pacing, usage chunks, an API-key check, recorded requests, and
fault injection chosen per request::

    with nbllm.testing.serve(reply="Hello!", tokens_per_s=200) as server:
        server.base_url                   # "http://127.0.0.1:53211/v1"
        server.enqueue(Fault("rate_limit", retry_after="1"))   # the next request gets a 429
        server.requests[-1].body          # what the client sent

A fault can also be asked for by the client with the header
``x-nbllm-fault: KIND; key=value; ...`` (for example from a provider's ``--header``).

Fault kinds: ``rate_limit`` (429; ``retry_after``, ``retry_after_ms``), ``server_error``
(``status`` 500 or 503), ``reset`` (connection reset after ``after_chunks`` chunks),
``stall`` (stop for ``seconds`` after ``after_chunks`` chunks), ``malformed`` (a chunk
that is not JSON), ``error_event`` (an error object mid-stream), ``no_done`` (the
stream ends with neither finish_reason nor ``[DONE]``), ``finish_no_done``
(finish_reason but no ``[DONE]``, like transformers serve), ``crlf`` (CRLF line ends),
``byte_writes`` (one byte per write), ``slow_first_byte`` (wait ``seconds`` before the
response starts), ``unknown_model`` (404 model_not_found).

Reasoning (``reasoning="…"``): every reply thinks first, in the wire shape a kind of server
uses (``reasoning_shape=``, one of `REASONING_SHAPES`): ``reasoning_content`` (llama.cpp's
``llama-server``, DeepSeek, LM Studio, vLLM up to 0.10), ``reasoning`` (vLLM, Ollama),
``openrouter`` (``reasoning`` plus the same text in ``reasoning_details``), ``details`` (only
``reasoning_details``: a summary and an encrypted part) or ``think_tags`` (``<think>…</think>``
at the start of the content, as servers without a reasoning parser send it). Usage then counts
the thinking in ``completion_tokens_details.reasoning_tokens``. ``chunk_chars=N`` sends the
text N characters per event instead of a word per event (1 splits a tag at every character).
A request's ``max_tokens`` is honoured: the reply, thinking included, is cut at that many
tokens with finish reason ``length``.

Embeddings (``/v1/embeddings``, also under an Azure deployment path): one unit vector per text,
drawn from a hash of the text (`vector_for`), ``embedding_dimensions`` long (16 by default); a
request's ``dimensions`` shortens them unless ``honours_dimensions=False`` (llama.cpp ignores
it). Status faults, ``reset``, ``stall``, ``malformed`` and ``error_event`` apply there too.

HTTPS (``ssl_context=``, a server-side context holding its certificate, e.g. from trustme):
the server speaks TLS, and ``base_url`` says ``https``; ``host=`` picks the loopback address it
listens on (``127.0.0.2`` is this machine too, but not exempt from proxies).

Framing (``framing=``): ``"chunked"`` (the default) sends each server-sent event as its own
HTTP chunk and keeps the connection alive, as uvicorn, vLLM, llama.cpp and OpenAI do;
``"bytes"`` splits every event into chunks of 1 to 3 bytes; ``"body"`` sends the stream
unframed and closes the connection at its end, so a client reading fast enough sees many
events in one read (the framing that once hid a per-read delay in nbllm's client).

Run it on its own with ``python -m nbllm.testing --port 0``. The package: `server` (the state,
the handler, Chat Completions), `anthropic` and `responses` (the other protocols' shapes), `embeddings`.
"""

from __future__ import annotations

from nbllm.testing.embeddings_writer import vector_for
from nbllm.testing.server import (
    FAULT_KINDS,
    FRAMINGS,
    REASONING_SHAPES,
    Fault,
    LoopbackServer,
    RecordedRequest,
    ReplyFunction,
    ScriptedToolCall,
    main,
    serve,
    split_tokens,
)

__all__ = [
    "FAULT_KINDS",
    "FRAMINGS",
    "REASONING_SHAPES",
    "Fault",
    "LoopbackServer",
    "RecordedRequest",
    "ReplyFunction",
    "ScriptedToolCall",
    "main",
    "serve",
    "split_tokens",
    "vector_for",
]
