"""Tunable numbers, named with their unit, and the package's version. No other logic lives here."""

from __future__ import annotations

import functools

CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a TCP/TLS connection to an endpoint."""

READ_TIMEOUT_S = 120.0
"""How long to wait between two reads of a response (a stalled stream ends after this)."""

MIN_REQUESTS_PER_SECOND = 0.001
"""The slowest --rps accepted (one request in about 17 minutes): 1e-300 once made a call sleep forever."""

MAX_RETRIES = 2
"""Retries after the first attempt for 408, 409, 429, 5xx, connect errors and timeouts."""

RETRY_AFTER_CEILING_S = 60.0
"""A server asking us to wait longer than this fails over (or fails, naming the wait)."""

BACKOFF_BASE_S = 0.5
"""First exponential-backoff delay; doubled on each further attempt."""

BACKOFF_MAX_S = 8.0
"""Largest exponential-backoff delay, before jitter."""

SUGGESTION_CUTOFF = 0.6
"""difflib similarity (0..1) above which an unknown model name earns a "did you mean"."""

MAX_SUGGESTIONS = 3
"""How many close names an unknown-model error lists at most."""

MAX_YAML_CHARS = 1_000_000
"""The longest YAML cell or providers file nbllm reads."""

MAX_YAML_DEPTH = 50
"""The deepest nesting a YAML cell or providers file may have (a provider needs four levels)."""

CONFIG_FILE_NAME = "providers.yaml"
"""File, inside the config directory, that `%llm_provider save` writes."""

CONFIG_DIR_ENV = "NBLLM_CONFIG_DIR"
"""Environment variable that overrides the platform config directory (tests use it)."""

KEYRING_SERVICE = "nbllm"
"""Service name under which keys are kept in the OS keyring."""


@functools.cache
def version() -> str:
    """The installed package's version, from its metadata (sent in the User-Agent header; read
    on first use: importlib.metadata costs about 40 ms, more than %load_ext itself)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("nbllm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


THROTTLE_MS = 66
"""Shortest interval between two live updates of a streaming reply's display: about 15 a second,
smooth to read, and each update costs the kernel a display message (and a flush of its output)."""

THROTTLE_STRETCH_CHARS = 2000
"""For `--compare` columns, which resend their whole text: past this many characters the update
interval grows with the text (interval x length / this), so the bytes resent stay about linear in
the reply's length rather than quadratic. A single reply resends only its open tail and keeps a
fixed interval (see `nbllm._views.blocks`)."""

RENDER_TICK_S = 0.05
"""How often a live display checks for text to flush or a countdown to redraw."""

REPLY_RESERVE_TOKENS = 1024
"""Tokens kept free for the reply when trimming a conversation and --max-tokens is not given
(at most a quarter of the context window)."""

MESSAGE_FRAMING_TOKENS = 4
"""Tokens a chat template adds around each message (role markers); part of the prompt estimate."""

IMAGE_TOKENS_ESTIMATE = 765
"""Prompt tokens counted for one image (a high-detail 512x512 image at OpenAI's published rate)."""

MAX_TOOL_ROUNDS = 5
"""How many times a %%chat cell runs the model's tool calls before it stops asking."""

LIVE_ENV = "NBLLM_LIVE"
WIDGETS_ENV = "NBLLM_WIDGETS"
"""``NBLLM_WIDGETS=0``: draw nothing as a widget (for front ends without a widget manager)."""
"""Set to 0 to render each reply once, when it ends (headless runs: nbval, nbconvert)."""

AFTER_FINISH_GRACE_S = 0.5
"""Once a reply has its finish reason, how long the rest (usage, [DONE], the body's end) may take
before nbllm returns the reply as it is: a server that stalls after the end of a reply does not
hold it for the whole read timeout."""

CONTEXT_SUSPECT_FRACTION = 0.5
"""An empty reply to a prompt that fills at least this share of the model's declared window is
reported as ContextTooLongError: nbllm's count may be well under the server's (1.8x for SmolLM2)."""

ESTIMATE_MARGIN = 1.25
"""When no exact token count is at hand, the estimate is raised by this factor before it is
checked against the context window."""

TOKENIZE_TIMEOUT_S = 3.0
"""How long the pre-flight check waits for a server's tokenizer before it counts on its own."""

KEEPALIVE_EXPIRY_S = 4.0
"""How long an idle pooled connection is kept for the next call. Below uvicorn's 5 s keep-alive
timeout (llama-cpp-python, vLLM, LiteLLM), so nbllm drops an idle connection before the server
does and never sends a request into one the server is closing."""

LOCAL_CONTEXT_WINDOW = 2048
"""Context window the bundled local model is started with (SmolLM2 was trained for 8192)."""

LOCAL_READY_TIMEOUT_S = 120.0
"""How long `%llm_provider local start` waits for the server to answer before giving up."""

EFFORTS = ("none", "low", "medium", "high")
"""The values of ``--effort`` (``effort=``): how hard a reasoning model thinks; none turns it off."""

REASONING_STYLES = ("openai", "openrouter", "deepseek", "template")
"""How a provider is told the effort (see `nbllm._calls.wire.reasoning`): OpenAI's
``reasoning_effort``, OpenRouter's ``reasoning`` object, DeepSeek's ``thinking`` switch, or the
chat template's ``enable_thinking`` (Qwen3 and others on vLLM and llama.cpp)."""

APIS = ("chat", "responses", "auto", "anthropic")
"""The wire protocols a provider can speak (``--api``): OpenAI Chat Completions; OpenAI's
Responses API (``/responses``); auto, Responses first, then Chat Completions for good when the
endpoint has no ``/responses``; or Anthropic Messages (``/v1/messages``)."""

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent to Anthropic-compatible endpoints (unless configured)."""

ANTHROPIC_MAX_TOKENS = 4096
"""The reply limit sent when none is given: the Messages API requires one."""

ANTHROPIC_THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
"""Thinking tokens per --effort on Anthropic-compatible endpoints (1,024 is the API's minimum)."""

EMBED_BATCH_SIZE = 32
"""Texts per ``/embeddings`` request by default: OpenAI takes up to 2,048, but a local server
such as llama.cpp's fits each batch into one compute batch, and a smaller request that fails
is cheaper to retry."""

EMBED_CONCURRENCY = 4
"""``/embeddings`` requests in flight at once for one `nbllm.embed` by default (the provider's
--rps limit still applies to each)."""

TYPICAL_REPLY_TOKENS = 256
"""A request's reply size, for a tokens-per-minute budget, when it sets no max_tokens (the
booking is corrected with the real count when the reply ends)."""

MAP_CONCURRENCY = 8
"""Rows of an `nbllm.map` run in flight at once, unless the call says otherwise."""
PROGRESS_TICK_S = 0.25
"""Shortest interval between updates of a batch run's progress bar."""
OWN_HEADERS = frozenset({"Content-Type", "Accept", "User-Agent", "anthropic-version"})
"""The headers nbllm itself sets: the only ones a redirect to another host receives."""
CACHE_LOCK_WAIT_S = 1.0
"""How long the response cache waits for a file another process holds before it lets the call
go to the endpoint (with a warning)."""
MAX_CASSETTE_CHARS = 200_000_000
"""The largest cassette nbllm writes and reads (one limit for both: cassettes of long replies
are normal, and what nbllm writes it must read back)."""
MAX_REPLAY_WAIT_S = 10.0
"""The longest pause a cassette played at its recorded speed makes between two events."""
CHECKPOINT_LOCK_WAIT_S = 5.0
"""How long a batch run waits for a checkpoint file another process holds before it says so."""
MAX_PLACEHOLDER_CHARS = 200_000
"""The most one ``{placeholder}`` may put into a prompt (about 50,000 tokens): a variable that
renders to megabytes is refused before anything is sent, not sent to be refused or billed."""
MAX_PROMPT_CHARS = 8_000_000
"""A request whose messages hold more text than this (about 2,000,000 tokens, past any model's
window) is refused before sending, whether or not the model's window is declared."""
MAX_SHOWN_THINKING_CHARS = 20_000
"""The thinking a cell's final output (and so the saved notebook) shows; the rest is on
``nbllm.last().reasoning``."""

CONTEXT_LEVELS = ("schema", "sample", "full")
"""How much of a notebook value a ``{placeholder}`` sends (``--context``): names and types
only, a compact summary with a sample (the default), or the value's ``str()``."""
DEFAULT_CONTEXT_TOKENS = 1_500
"""About how many tokens one value's summary may take (``--context-tokens``)."""

CHARS_PER_TOKEN = 4.0
"""A rough average for English text with BPE tokenizers: the estimate when no tokenizer counts."""
