"""A whole embeddings call: texts in batches, a few batches in flight, each with the provider's
rate limit and retry policy; the vectors in order, and one history record for the call.

No fallbacks: another model's vectors live in another space, so mixing them in one result (or
comparing them with vectors made earlier) would be silently wrong. A batch that fails after its
retries fails the call; the vectors of the batches done are kept on the error's ``result``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from nbllm._calls.attempt import Again, AttemptLoop, CallOptions, Outgoing
from nbllm._calls.budget import get_budget
from nbllm._calls.edge import translate
from nbllm._calls.errors import json_object
from nbllm._calls.history import AttemptRecord, CallRecord, History, get_history
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.results import ChatEvent, EmbedResult, Usage
from nbllm._calls.tokens import default_counter
from nbllm._calls.wire.embeddings import Vector, prepare, read_vectors
from nbllm._constants import EMBED_BATCH_SIZE, EMBED_CONCURRENCY
from nbllm._exceptions import (
    APIError,
    CapabilityError,
    ContextTooLongError,
    NbllmError,
    PromptError,
    ProtocolError,
)
from nbllm._providers.resolved import Resolved
from nbllm._providers.urls import host_of

NO_FALLBACK_HINT = (
    "try again later, or pace the provider's calls by registering it with --rps N; embeddings do "
    "not fall back to another model, whose vectors would not be comparable"
)


@dataclass(frozen=True)
class EmbedRequest:
    """What to embed and how: the texts (checked here), the vector length to ask for, the
    texts per request and the requests in flight at once."""

    texts: list[str]
    dimensions: int | None = None
    batch_size: int = EMBED_BATCH_SIZE
    concurrency: int = EMBED_CONCURRENCY

    def __post_init__(self) -> None:
        for name in ("batch_size", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PromptError(f"{name} should be a whole number of at least 1, not {value!r}")
        dims = self.dimensions
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
            raise PromptError(f"dimensions should be a whole number of at least 1, not {dims!r}")
        wrong = [i for i, text in enumerate(self.texts) if not isinstance(text, str)]
        if wrong:
            first = self.texts[wrong[0]]
            raise PromptError(
                f"every text should be a string; {_positions(wrong)} {_is_are(wrong)} not "
                f"(the first is {type(first).__name__}: {first!r:.40})",
                hint="convert them first, e.g. df['col'].fillna('').astype(str), then drop the empty ones",
            )
        empty = [i for i, text in enumerate(self.texts) if not text]
        if empty:
            raise PromptError(
                f"{_positions(empty)} {_is_are(empty)} empty, and servers refuse empty input; "
                "nothing was sent",
                hint="drop the empty texts (keep their positions to put the vectors back), or replace them",
            )

    def batches(self) -> list[tuple[int, list[str]]]:
        """(position of the first text, the texts) for each request, in order."""
        size = self.batch_size
        return [(start, self.texts[start : start + size]) for start in range(0, len(self.texts), size)]


def _positions(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:5])) + (f" and {len(indices) - 5} more" if len(indices) > 5 else "")
    return f"text{'s' if len(indices) > 1 else ''} {shown}"


def _is_are(indices: list[int]) -> str:
    return "are" if len(indices) > 1 else "is"


def check_embeddable(request: EmbedRequest, resolved: Resolved) -> None:
    """Refuse, before sending, what cannot work: an Anthropic Messages provider (no embeddings
    API), or a text clearly over the model's declared window."""
    if resolved.provider.api == "anthropic":
        raise CapabilityError(
            f"{resolved.qualified_name} is an Anthropic Messages provider, and that API has no "
            "embeddings; nothing was sent",
            hint="register the embedding endpoint as an OpenAI-compatible provider (--api chat)",
        )
    window = resolved.spec.context_window
    if not window:
        return
    counter = default_counter()
    over = [i for i, text in enumerate(request.texts) if counter.count_text(text) > window]
    if over:
        how = "counted with tiktoken" if counter.exact else "estimated"
        raise ContextTooLongError(
            f"{_positions(over)} {_is_are(over)} longer than {resolved.qualified_name}'s context window "
            f"of {window:,} tokens ({how}); nothing was sent",
            hint="split long texts into chunks and embed the chunks",
        )


class _Embedding:
    """The state of one embeddings call across its batches."""

    def __init__(self, request: EmbedRequest, resolved: Resolved, options: CallOptions) -> None:
        self.request, self.resolved, self.options = request, resolved, options
        self.history: History = options.history or get_history()
        self.result = EmbedResult(
            vectors=[None] * len(request.texts), model=resolved.qualified_name, status="error"
        )
        self.attempts: list[AttemptRecord] = []
        self.counted_tokens = 0
        self.estimated_tokens = 0
        self.started = time.perf_counter()
        self.started_at = datetime.now(timezone.utc)
        self.error_class: str | None = None
        self.sources: set[str | None] = set()
        """Where the batches' replies came from: None (the endpoint), ``cassette`` or ``cache``."""

    async def run(self) -> EmbedResult:
        batches = self.request.batches()
        slots = asyncio.Semaphore(self.request.concurrency)

        async def one(number: int, start: int, texts: list[str]) -> None:
            async with slots:
                await self._batch(number, len(batches), start, texts)

        counter = default_counter()
        tasks: list[asyncio.Future[None]] = []
        try:
            # Before any batch is sent: a budget the texts would pass refuses them all.
            get_budget().check_tokens(
                self.resolved, lambda: sum(counter.count_text(t) for _, texts in batches for t in texts), 0
            )
            tasks = [
                asyncio.ensure_future(one(number, start, texts))
                for number, (start, texts) in enumerate(batches, 1)
            ]
            await asyncio.gather(*tasks)
            self.result.status = "ok"  # earned: every batch came back whole
        except Exception as exc:  # the first batch to fail; the others stop
            await _cancel(tasks)
            error = translate(exc, self.resolved)
            self._fail(error)
            raise error from error.__cause__
        except BaseException:  # cancelled or interrupted
            await _cancel(tasks)
            self.result.status = "cancelled"
            raise
        finally:
            self._record()
        return self.result

    async def _batch(self, number: int, of: int, start: int, texts: list[str]) -> None:
        """One batch, through the attempt engine, until it succeeds or fails for good."""
        batch = _EmbedExchange(self.resolved, texts, self.request.dimensions)
        loop = AttemptLoop(batch, self.resolved, self.options, self.attempts)
        self.result.requests += 1
        try:
            async for _ in loop.run():  # a status before each new attempt: a retry
                self.result.retries += 1
        except APIError as error:
            where = f"batch {number} of {of} (texts {start}-{start + len(texts) - 1})"
            error.message = f"{where}: {error.message}"
            if error.hint and "--fallback" in error.hint:
                error.hint = NO_FALLBACK_HINT
            raise
        self.sources.add(loop.state.replayed)
        self._store(start, texts, batch.vectors, batch.tokens)

    def _store(self, start: int, texts: list[str], vectors: list[Vector], tokens: int | None) -> None:
        length = len(vectors[0])
        expected = self.result.dimensions = self.result.dimensions or length
        if length != expected:
            raise ProtocolError(
                f"{self.resolved.qualified_name} sent {length}-dimensional vectors for one batch and "
                f"{expected}-dimensional ones for another",
                hint="the server may route batches to different models; check its configuration",
            )
        self.result.vectors[start : start + len(vectors)] = vectors
        if tokens is None:
            self.estimated_tokens += sum(default_counter().count_text(t) for t in texts)
        else:
            self.counted_tokens += tokens

    def _fail(self, error: NbllmError) -> None:
        self.result.status = "error"
        self.error_class = type(error).__name__
        done = len(self.result.vectors) - len(self.result.missing())
        if done and isinstance(error, APIError):
            error.message += (
                f" ({done} of {len(self.result.vectors)} texts were embedded before it failed; their "
                "vectors are on this error's .result.vectors, None for the others)"
            )
        self.result.error = str(error).split("\n")[0]
        if isinstance(error, APIError):
            error.result = self.result

    def _record(self) -> None:
        result = self.result
        result.latency_s = time.perf_counter() - self.started
        result.usage = Usage(
            prompt_tokens=self.counted_tokens + self.estimated_tokens,
            estimated=bool(self.estimated_tokens),
        )
        price = self.resolved.spec.price
        self.history.add(
            CallRecord.from_embedding(
                result,
                host=host_of(self.resolved.provider.url),
                started_at=self.started_at,
                attempts=self.attempts,
                error_class=self.error_class,
                replayed=next(iter(self.sources)) if len(self.sources) == 1 else None,
                cost=price.cost(result.usage.prompt_tokens, 0) if price else None,
            )
        )


class _EmbedExchange:
    """An embeddings batch inside the attempt engine: one JSON reply, read whole."""

    def __init__(self, resolved: Resolved, texts: list[str], dimensions: int | None) -> None:
        self.resolved, self.texts, self.dimensions = resolved, texts, dimensions
        self.vectors: list[Vector] = []
        self.tokens: int | None = None

    def prepare(self, resolved: Resolved) -> Outgoing:
        return Outgoing(prepare(resolved, self.texts, self.dimensions))

    async def read(
        self, response: httpx.Response, outgoing: Outgoing, state: ReplyState
    ) -> AsyncIterator[ChatEvent]:
        body = (await response.aread()).decode("utf-8", errors="replace")
        payload = json_object(body, self.resolved, state, "embeddings reply")
        self.vectors, self.tokens = read_vectors(
            payload, len(self.texts), self.dimensions, self.resolved, state
        )
        return
        yield  # an async generator that shows nothing: vectors are not streamed

    def check(self, outgoing: Outgoing, state: ReplyState) -> Again | None:
        return None

    def learn(self, error: APIError, outgoing: Outgoing, state: ReplyState) -> Again | None:
        return None


async def _cancel(tasks: Sequence[asyncio.Future[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_embed(
    request: EmbedRequest, resolved: Resolved, options: CallOptions | None = None
) -> EmbedResult:
    """Embed `request`'s texts with `resolved`'s model; raises an `NbllmError` on failure (an
    `APIError` carries the vectors done on its ``result``). Every call is recorded, with no text."""
    check_embeddable(request, resolved)
    if not request.texts:
        return EmbedResult(vectors=[], model=resolved.qualified_name)
    return await _Embedding(request, resolved, options or CallOptions()).run()
