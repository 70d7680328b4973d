"""The attempt engine's one edge: a foreign exception raised at any seam under it (transport,
tape, cache, cassette, pool, wire reader, SSE decoder) reaches the caller as an nbllm error
whose ``__cause__`` is the original, and the history records a failure, never ``ok``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbllm
from nbllm import ProviderConfig
from nbllm._calls.edge import translate
from nbllm._replay import tape
from nbllm.testing import serve
from tests.helpers import SENTINEL_KEY

FOREIGN = [
    RuntimeError("boom"),
    OSError(28, "No space left on device"),
    sqlite3.OperationalError("database is locked"),
    ValueError("bad value"),
    TypeError("unsupported operand"),
]


def _raiser(exc: BaseException) -> Any:
    def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return raise_it


def _async_raiser(exc: BaseException) -> Any:
    async def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return raise_it


def _failing_reader(exc: BaseException) -> Any:
    async def read(*args: Any, **kwargs: Any) -> Any:
        raise exc
        yield  # an async generator, as the protocols' readers are

    return read


def plant(seam: str, exc: BaseException, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make `seam` raise `exc` on the next call."""
    if seam == "transport":  # the real socket transport under the tape hook
        monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", _async_raiser(exc))
    elif seam == "tape":
        monkeypatch.setattr(tape.TapeTransport, "handle_async_request", _async_raiser(exc))
    elif seam == "cache":
        cache = nbllm.response_cache(tmp_path / "cache.sqlite").activate()
        monkeypatch.setattr(cache, "_get", _raiser(exc))
    elif seam == "cassette":
        cassette = nbllm.cassette(tmp_path / "calls.yaml", mode="auto").activate()
        monkeypatch.setattr(cassette, "_next_recording", _raiser(exc))
    elif seam == "pool":
        monkeypatch.setattr("nbllm._calls.pool._LoopClients.entry_for", _raiser(exc))
    elif seam == "wire reader":
        monkeypatch.setattr("nbllm._calls.wire.chat_completions.read_stream", _failing_reader(exc))
    elif seam == "decoder":
        monkeypatch.setattr("nbllm._calls.sse.SSEDecoder.feed", _raiser(exc))
    else:
        raise AssertionError(seam)


SEAMS = ["transport", "tape", "cache", "cassette", "pool", "wire reader", "decoder"]


@pytest.fixture
def server() -> Iterator[Any]:
    with serve(reply="All good.", api_key=SENTINEL_KEY) as running:
        nbllm.get_store().add_provider(
            ProviderConfig(
                name="p", url=running.base_url, key=SENTINEL_KEY, models=["m"], retry={"max_retries": 0}
            )
        )
        yield running


@pytest.fixture(autouse=True)
def no_tape_left() -> Iterator[None]:
    yield
    for slot in ("cassette", "cache"):
        tape.use(slot, None)


# A locked or damaged cache file (an SQLite error at the cache) is not a failure: the call goes to
# the endpoint with a warning (tests/test_cache_identity.py).
SEAM_FAULTS = [
    pytest.param(seam, exc, id=f"{type(exc).__name__}-{seam}")
    for seam in SEAMS
    for exc in FOREIGN
    if not (seam == "cache" and isinstance(exc, sqlite3.Error))
]


@pytest.mark.parametrize(("seam", "exc"), SEAM_FAULTS)
def test_a_foreign_exception_at_any_seam_is_an_nbllm_error_and_a_recorded_failure(
    seam: str, exc: BaseException, server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plant(seam, exc, monkeypatch, tmp_path)
    with pytest.raises(nbllm.NbllmError) as info:
        nbllm.chat("hi", "p/m", temperature=0)  # temperature 0: the cache is asked
    assert info.value.__cause__ is exc
    assert SENTINEL_KEY not in str(info.value)
    record = nbllm.history()[-1]
    assert record.status == "error" and record.error_class == type(info.value).__name__
    assert nbllm.last() is not None and nbllm.last().status == "error"  # type: ignore[union-attr]


def test_the_same_call_without_a_planted_fault_succeeds(server: Any) -> None:
    """The seams above fail only because of what the test planted."""
    assert nbllm.chat("hi", "p/m", temperature=0).text == "All good."
    assert nbllm.history()[-1].status == "ok"


def test_an_async_stream_that_fails_under_the_engine_also_records_a_failure(
    server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    boom = RuntimeError("mid-read")
    plant("decoder", boom, monkeypatch, tmp_path)

    async def consume() -> None:
        async for _ in nbllm.astream("hi", "p/m"):
            pass

    with pytest.raises(nbllm.UnexpectedError) as info:
        asyncio.run(consume())
    assert info.value.__cause__ is boom and nbllm.history()[-1].status == "error"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("slow"), nbllm.APITimeoutError),
        (httpx.ConnectError("refused"), nbllm.APIConnectionError),
        (sqlite3.OperationalError("database is locked"), nbllm.UnexpectedError),
        (PermissionError(13, "Permission denied"), nbllm.UnexpectedError),
        (KeyError("choices"), nbllm.UnexpectedError),
    ],
)
def test_the_translation_table(exc: Exception, expected: type[nbllm.NbllmError], server: Any) -> None:
    resolved = nbllm.get_store().resolve("p/m")
    error = translate(exc, resolved)
    assert type(error) is expected and error.__cause__ is exc
    assert type(exc).__name__ in error.message and "p/m" in error.message and error.hint


def test_a_translated_message_never_repeats_a_secret(server: Any) -> None:
    resolved = nbllm.get_store().resolve("p/m")
    leaked = ValueError(f"header Authorization: Bearer {SENTINEL_KEY} rejected; also x-tenant=acme-secret-1")
    error = translate(leaked, resolved, {"acme-secret-1"})
    assert SENTINEL_KEY not in str(error) and "acme-secret-1" not in str(error)


def test_an_nbllm_error_is_passed_through_as_it_is() -> None:
    error = nbllm.PromptError("already ours")
    assert translate(error, None) is error  # type: ignore[arg-type]


def test_a_new_session_forgets_everything_the_old_one_knew(server: Any, tmp_path: Path) -> None:
    from nbllm._calls.learned import learned
    from nbllm._calls.pacing import pacer_for
    from nbllm._cells.conversation import get_conversations
    from nbllm._session import new_session, session

    nbllm.chat("hi", "p/m")
    learned().refused_schemas.add("p/m")
    pacer_for("p").hold(30)
    get_conversations().get("c").system = "be brief"
    nbllm.response_cache(tmp_path / "c.sqlite").activate()
    old = session()
    assert "History" in repr(old) and "Store" in repr(old)

    new_session()
    assert session() is not old and nbllm.get_store().providers == {}
    assert nbllm.history() == [] and nbllm.last() is None
    assert learned().refused_schemas == set() and pacer_for("p").held_for() == 0
    assert get_conversations().get("c").system is None and tape.active("cache") is None


def test_an_attempt_reads_with_the_protocol_that_prepared_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent call learning "no Responses API here" between preparing a request and
    reading its reply must not pair a Responses request with a Chat Completions reader."""
    from nbllm._calls.protocol_choice import WireProtocol, learn_no_responses

    with serve("From Responses.", responses=True) as running:
        provider = ProviderConfig(name="a", url=running.base_url, auth="none", api="auto", models=["m"])
        nbllm.get_store().add_provider(provider)
        prepare = WireProtocol.prepare

        def prepare_then_learn(self: WireProtocol, resolved: Any, request: Any) -> Any:
            prepared = prepare(self, resolved, request)
            learn_no_responses(resolved.provider)  # what a concurrent call might learn meanwhile
            return prepared

        monkeypatch.setattr(WireProtocol, "prepare", prepare_then_learn)
        assert nbllm.chat("hi", "a/m").text == "From Responses."
        assert running.requests[-1].path.endswith("/responses")


EMBED_SEAMS = ["transport", "tape", "pool", "vector reader"]


@pytest.mark.parametrize("seam", EMBED_SEAMS)
@pytest.mark.parametrize("exc", FOREIGN[:3], ids=lambda e: type(e).__name__)
def test_embeddings_go_through_the_same_engine_and_edge(
    seam: str, exc: BaseException, server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if seam == "vector reader":
        monkeypatch.setattr("nbllm._calls.embed.read_vectors", _raiser(exc))
    else:
        plant(seam, exc, monkeypatch, tmp_path)
    with pytest.raises(nbllm.NbllmError) as info:
        nbllm.embed(["a", "b"], "p/m")
    assert info.value.__cause__ is exc and "batch 1 of 1" in str(info.value)
    record = nbllm.history()[-1]
    assert record.kind == "embed" and record.status == "error" and record.attempts[-1].outcome != "ok"


def test_an_embedding_retry_is_one_more_attempt_of_the_same_engine(server: Any) -> None:
    from nbllm.testing import Fault

    nbllm.get_store().add_provider(
        ProviderConfig(
            name="r",
            url=server.base_url,
            key=SENTINEL_KEY,
            models=["m"],
            retry={"max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.01},
        )
    )
    server.enqueue(Fault("server_error", status=503))
    assert len(nbllm.embed(["a"], "r/m")) == 1
    record = nbllm.history()[-1]
    assert [a.outcome for a in record.attempts] == ["ServerError", "ok"] and record.retries == 1
