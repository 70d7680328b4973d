"""The public functions: `chat` (sync), `achat` (async), `astream` (events), `embed` and
`aembed` (vectors), `map` and `amap` (a prompt over a table's rows), `history`, `panel`.

Every request option is an explicit keyword, checked before anything is sent: a wrong type or
range, or an unknown name, is a `PromptError` that names it. The panel is imported when
first used, so a plain script never loads ipywidgets.
"""

from __future__ import annotations

import asyncio
import difflib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypedDict

import pydantic
from typing_extensions import Unpack

from nbllm._batch.counters import ProgressView
from nbllm._batch.rows import read_rows, with_outputs
from nbllm._batch.run import MapRun, MapSpec, checkpoint_path, map_spec
from nbllm._calls.call import run_call, stream_call, to_messages
from nbllm._calls.embed import EmbedRequest, run_embed
from nbllm._calls.history import CallRecord, get_history
from nbllm._calls.loop_thread import loop_thread
from nbllm._calls.preparation import PreparedCall, prepare_call
from nbllm._calls.request import ChatRequest
from nbllm._calls.results import ChatEvent, ChatResult, EmbedResult
from nbllm._calls.routes import plan_routes
from nbllm._cells.tools import Tool
from nbllm._cells.typed import check_schema, run_typed
from nbllm._cells.ui_thread import run_with_ui
from nbllm._constants import PROGRESS_TICK_S
from nbllm._exceptions import PromptError
from nbllm._providers.resolved import Resolved
from nbllm._providers.store import get_store
from nbllm._replay.cache import ResponseCache
from nbllm._replay.cassette import Cassette
from nbllm._views.progress import progress_view

Prompt = str | Sequence[dict[str, Any]]
ToolSpec = Callable[..., Any] | dict[str, Any] | str
"""A Python function, an OpenAI tool schema, or ``"mcp:NAME"``/``"mcp:NAME/TOOL"`` (the server's schemas)."""


class RequestOptions(TypedDict, total=False):
    """The keyword options of `chat`, `achat` and `astream` (one definition, so the three
    cannot drift apart; type checkers see each name through ``Unpack``)."""

    system: str | None
    fallback: str | Sequence[str] | None
    temperature: float | None
    max_tokens: int | None
    stop: str | Sequence[str] | None
    seed: int | None
    tools: Sequence[ToolSpec] | None
    tool_choice: str | None
    json: bool
    json_schema: dict[str, Any] | None
    stream: bool | None
    effort: str | None
    check_context: bool
    schema: type[pydantic.BaseModel] | None


OPTION_NAMES = tuple(RequestOptions.__annotations__)
DEFAULTS: RequestOptions = {"json": False, "check_context": True}


def tool_schema(function: Callable[..., Any], name: str | None = None) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for a Python function: its JSON schema comes from the
    signature's type hints and the docstring (the same description ``%%chat --tools`` sends)."""
    return Tool.from_callable(function, name).schema()


def _refuse_unknown(given: Mapping[str, Any], names: Sequence[str]) -> None:
    unknown = [name for name in given if name not in names]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, names, n=1)
        raise PromptError(
            f"unknown option {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            hint="the options are " + ", ".join(names),
        )


def _build(prompt: Prompt, model: str | None, given: RequestOptions) -> PreparedCall:
    _refuse_unknown(given, OPTION_NAMES)
    if not (isinstance(prompt, str) or (isinstance(prompt, Sequence) and not isinstance(prompt, bytes))):
        raise PromptError(f"the prompt should be text or a list of messages, not {type(prompt).__name__}")
    if not isinstance(prompt, str) and not all(isinstance(m, dict) for m in prompt):
        raise PromptError(
            "a list prompt should hold messages (dicts with 'role' and 'content'), not "
            f"{type(next(m for m in prompt if not isinstance(m, dict))).__name__}",
            hint='e.g. [{"role": "user", "content": "Hi"}]; for several prompts use nbllm.map',
        )
    if not prompt or (isinstance(prompt, str) and not prompt.strip()):
        raise PromptError("there is nothing to send: give a prompt or at least one message")
    if model is not None and not isinstance(model, str):
        raise PromptError(f"model should be a name such as 'provider/model', not {model!r}")
    options: dict[str, Any] = {name: None for name in OPTION_NAMES} | dict(DEFAULTS) | dict(given)
    system, fallback = options.pop("system"), options.pop("fallback")
    if system is not None and not isinstance(system, str):
        raise PromptError(f"system should be text, not {type(system).__name__}")
    if fallback is not None and not (
        isinstance(fallback, str)
        or (isinstance(fallback, Sequence) and all(isinstance(f, str) for f in fallback))
    ):
        raise PromptError(f"fallback should be model names ('a/m1,b/m2' or a list), not {fallback!r}")
    stop = options.pop("stop")
    tools = options.pop("tools")
    schema = options.pop("schema")
    if schema is not None:
        schema = check_schema(schema)
    json_mode = options.pop("json")
    if not isinstance(options["check_context"], bool):
        raise PromptError(f"check_context should be True or False, not {options['check_context']!r}")
    request = ChatRequest(
        messages=to_messages(prompt, system),
        stop=[stop] if isinstance(stop, str) else stop,
        tools=_tool_schemas(tools),
        json_mode=json_mode,
        **options,
    )
    return prepare_call(request, plan_routes(model, fallback), schema)


async def _typed_or_plain(call: PreparedCall) -> ChatResult:
    if call.schema is None:
        return await run_call(call.request, call.routes)
    return await run_typed(
        call.request, call.resolved, call.schema, lambda asking: run_call(asking, call.routes)
    )


def _tool_schemas(tools: Sequence[ToolSpec] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, dict)) or not isinstance(tools, Sequence):
        raise PromptError(
            "tools should be a list of Python functions, OpenAI tool schemas or 'mcp:NAME[/TOOL]'"
        )
    schemas: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, str) and tool.startswith("mcp:"):
            from nbllm._cells.mcp_servers import tools_of

            schemas += [found.schema() for found in tools_of(tool).values()]
        elif isinstance(tool, dict):
            schemas.append(tool)
        elif callable(tool):
            schemas.append(tool_schema(tool))
        else:
            raise PromptError(
                f"a tool is a Python function, an OpenAI tool schema or 'mcp:NAME', not {tool!r}"
            )
    return schemas


def chat(
    prompt: Prompt,
    model: str | None = None,
    **options: Unpack[RequestOptions],
) -> ChatResult:
    """Ask `model` and wait for the whole reply. Safe inside a running kernel (the call runs
    on a background event loop); an interrupt closes the connection and leaves the partial
    reply in `nbllm.last()`.

    Options (keyword only, see `RequestOptions`): system, fallback, temperature, max_tokens,
    stop, seed, tools, tool_choice, json, json_schema, stream, effort, check_context, schema.
    `tools` are Python functions (described from their signature and docstring, see
    `tool_schema`) or OpenAI tool schemas; the model's calls are on ``result.tool_calls``.
    `json=True` asks for JSON and decodes it into ``result.parsed``. `stream=None` streams
    when the model is flagged for it. `effort` ("none", "low", "medium", "high") tells a
    reasoning model how hard to think, in the shape its provider expects (its
    ``reasoning_style``); the thinking is on ``result.reasoning``, apart from ``result.text``.
    `schema` (a pydantic model class) asks for a reply of its shape: as ``response_format`` for
    a model flagged ``json_schema``, else in the prompt (with JSON mode when flagged ``json``);
    the reply is validated into ``result.parsed`` (an instance), with one repair round before a
    `SchemaMismatchError`. A prompt that does not fit the model's declared context
    window is refused before sending (`ContextTooLongError`) unless `check_context=False`.
    Raises an `nbllm.NbllmError` subclass on failure; the partial result is on the error's
    ``result``."""
    return loop_thread().run(_typed_or_plain(_build(prompt, model, options)))


async def achat(
    prompt: Prompt,
    model: str | None = None,
    **options: Unpack[RequestOptions],
) -> ChatResult:
    """`chat`, awaited on the caller's event loop."""
    return await _typed_or_plain(_build(prompt, model, options))


def astream(
    prompt: Prompt,
    model: str | None = None,
    **options: Unpack[RequestOptions],
) -> AsyncIterator[ChatEvent]:
    """Yield `TokenEvent`, `ReasoningEvent` (thinking), `StatusEvent` and `ToolCallEvent` as
    the reply arrives, then
    `DoneEvent`. The options are `chat`'s, checked here, before the first event."""
    call = _build(prompt, model, options)
    if call.schema is not None:
        raise PromptError("schema= works with chat and achat, which validate the whole reply; not astream")
    return stream_call(call.request, call.routes)


Texts = str | Iterable[str]


class EmbedOptions(TypedDict, total=False):
    """The keyword options of `embed` and `aembed`."""

    batch_size: int
    """Texts per request (32 by default)."""
    dimensions: int | None
    """The vector length to ask for, where the model can shorten its vectors."""
    concurrency: int
    """Requests in flight at once (4 by default)."""


EMBED_OPTION_NAMES = tuple(EmbedOptions.__annotations__)


def embed(texts: Texts, model: str | None = None, **options: Unpack[EmbedOptions]) -> Any:
    """One vector per text from `model`'s ``/embeddings``: a numpy array of float32 (one row
    per text) when numpy is installed, else lists of floats. A single string gives one vector.

    Texts go `batch_size` to a request (32), `concurrency` requests at once (4), each with the
    provider's rate limit (--rps) and retries. `dimensions` asks for shorter vectors where the
    model supports it; a server that ignores it is an error, not a silent mismatch. Empty or
    non-string texts are refused before anything is sent. Each call is one history record
    (kind ``embed``: tokens and timing, never the texts). Raises an `nbllm.NbllmError`; a
    failed batch's error carries the vectors already made on ``error.result`` (an
    `EmbedResult`, None for the missing ones). Safe inside a running kernel."""
    request, resolved, single = _embed_request(texts, model, options)
    return _vectors(loop_thread().run(run_embed(request, resolved)), single)


async def aembed(texts: Texts, model: str | None = None, **options: Unpack[EmbedOptions]) -> Any:
    """`embed`, awaited on the caller's event loop."""
    request, resolved, single = _embed_request(texts, model, options)
    return _vectors(await run_embed(request, resolved), single)


def _embed_request(
    texts: Texts, model: str | None, options: EmbedOptions
) -> tuple[EmbedRequest, Resolved, bool]:
    _refuse_unknown(options, EMBED_OPTION_NAMES)
    single = isinstance(texts, str)
    if isinstance(texts, bytes | dict) or not (single or isinstance(texts, Iterable)):
        raise PromptError(
            f"texts should be a string or a list of strings (or a pandas Series), not {type(texts).__name__}"
        )
    if model is not None and not isinstance(model, str):
        raise PromptError(f"model should be a name such as 'provider/model', not {model!r}")
    listed = [texts] if isinstance(texts, str) else list(texts)
    request = EmbedRequest(listed, **options)
    return request, get_store().resolve(model), single


def _vectors(result: EmbedResult, single: bool) -> Any:
    """The result's vectors as the caller gets them: numpy when it is installed."""
    try:
        import numpy
    except ImportError:
        vectors: Any = result.vectors
        return vectors[0] if single else vectors
    # float32: what the servers compute in, and half the memory of numpy's default float64.
    array = numpy.asarray(result.vectors, dtype=numpy.float32)
    if not result.vectors:
        array = array.reshape(0, 0)
    return array[0] if single else array


def cassette(path: str | os.PathLike[str], mode: str = "auto", speed: str = "fast") -> Cassette:
    """A cassette: ``with nbllm.cassette("calls.yaml"):`` records the calls made inside it and
    replays them on later runs. `mode` is ``record``, ``replay`` (never the network: a request
    with no recording fails with `CassetteMissError`) or ``auto`` (replay what is recorded,
    record what is missing); ``$NBLLM_CASSETTE_MODE`` overrides it. `speed` ``recorded`` plays
    streams at their recorded pace. ``.activate()`` keeps it for the session, like
    ``%llm_cassette``."""
    return Cassette(path, mode=mode, speed=speed)


def response_cache(
    path: str | os.PathLike[str] | None = None, *, ttl_s: float | None = None, force: bool = False
) -> ResponseCache:
    """The response cache, from Python (``%llm_cache`` in a notebook): ``with
    nbllm.response_cache():`` answers a repeated deterministic request (temperature 0, a seed,
    or embeddings) made inside the block from an SQLite file, the platform's cache directory
    unless `path`; ``.activate()`` keeps it on for the session, ``.deactivate()`` turns it off.
    `ttl_s` ignores entries older than that many seconds; `force` caches every request. Only
    complete 2xx replies are kept, without keys; cached replies are marked in the footer and
    the history. ``.stats()`` and ``.clear()`` say what it holds and empty it."""
    return ResponseCache(path, ttl_s, force)


def history() -> list[CallRecord]:
    """Every recorded call of this session, oldest first."""
    return get_history().records()


def logs(
    since: datetime | timedelta | str | None = None,
    model: str | None = None,
    status: str | None = None,
    search: str | None = None,
    conversation: str | None = None,
    limit: int | None = 100,
) -> Any:
    """Logged calls, newest first (the log's file, or the default one while the log is off):
    `since` a time, a timedelta or an age such as ``"7d"``; `model` a ``provider/model`` or a
    provider; `status` ok, error, incomplete or cancelled; `search` words in prompts and replies
    (full-text). A pandas DataFrame (else a polars one, else a list of dicts)."""
    from nbllm._log import database
    from nbllm._log.writer import get_log

    if isinstance(since, str):
        since = database.age(since)
    if isinstance(since, timedelta):
        since = datetime.now(timezone.utc) - since
    connection = get_log().connection()
    try:
        rows = database.query(
            connection,
            since=since,
            model=model,
            status=status,
            search=search,
            conversation=conversation,
            limit=limit,
        )
    finally:
        connection.close()
    return _frame(rows, list(database.COLUMNS))


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    try:
        import pandas

        return pandas.DataFrame(rows, columns=columns)
    except ImportError:
        pass
    try:
        import polars

        return polars.DataFrame(rows, schema=columns, orient="row", infer_schema_length=None)
    except ImportError:
        return rows


def export(
    conversation: str | None = None, *, to: str = "md", path: str | Path | None = None, rows: Any = None
) -> Path:
    """Write a conversation (from the session, else the log) as ``md``, ``json`` (the messages,
    ready to resend or to import) or ``ipynb`` (a notebook whose cells are the turns), or log
    `rows` (from `logs`) as md or json; returns the path written (default ``NAME.FORMAT``)."""
    from nbllm._log.export import export as write_export

    return write_export(conversation, to=to, path=path, rows=rows)


def import_conversation(path: str | Path, name: str | None = None) -> str:
    """Restore a conversation from a JSON export; the next ``%%chat -c NAME`` (or a call with
    its messages) sends what the exported one would have. Returns its name."""
    from nbllm._log.export import import_conversation as restore

    return restore(path, name)


def budget(amount: float | None = None) -> str:
    """Set the session's budget (`amount`, in the prices' currency); with no argument, what is
    spent and left. Calls that would pass it are refused before they are sent."""
    from nbllm._calls.budget import get_budget

    if amount is not None:
        get_budget().set(amount)
    return get_budget().summary()


def panel() -> Any:
    """The ipywidgets panel over providers, models and the call history (see `nbllm._panel`)."""
    from nbllm._panel import Panel

    return Panel()


class MapOptions(TypedDict, total=False):
    """The keyword options of `map` and `amap` (see `map`)."""

    schema: type[pydantic.BaseModel] | None
    system: str | None
    concurrency: int
    rpm: float | None
    tpm: int | None
    max_cost: float | None
    checkpoint: str | os.PathLike[str] | bool | None
    output: str
    fallback: str | Sequence[str] | None
    progress: bool
    temperature: float | None
    max_tokens: int | None
    seed: int | None
    stop: str | Sequence[str] | None
    effort: str | None


def _map_spec(template: str, model: str | None, options: MapOptions) -> MapSpec:
    _refuse_unknown(options, tuple(MapOptions.__annotations__))
    return map_spec(
        template, model, {k: v for k, v in options.items() if k not in ("checkpoint", "progress")}
    )


def map(  # the name the issue gives it; this module uses no builtin map
    template: str, data: Any, model: str | None = None, **options: Unpack[MapOptions]
) -> Any:
    """Ask `model` once per row of `data` and return the rows with the answers added.

    `data` is a pandas or polars DataFrame, a list of dicts, or a list of strings (the column
    ``text``); `template` fills ``{column}`` from each row, as ``%%chat`` fills ``{variable}``.
    The result is the same kind of table with, per row: the answer (column `output`, or one
    column per field of `schema`, a pydantic model: see `chat`), then ``status`` (``ok``,
    ``error``, ``not run``, ``cancelled``), ``error``, ``tokens``, ``latency_s`` and ``cost``.
    A row that fails does not fail the run. Options: schema, system, concurrency (8), rpm,
    tpm, max_cost, checkpoint, output ("output"), fallback, progress (True), and the request
    options temperature, max_tokens, seed, stop and effort.

    `concurrency` caps the requests in flight, `rpm` and `tpm` the requests and tokens per
    minute, for every call to the provider while the run lasts (other cells' calls count and
    wait too); a 429 pauses the provider for the time the server asks. `max_cost` (dollars)
    stops sending rows when the cost so far plus the rows in flight would pass it (the model
    needs a ``--price``, or a server that reports cost).

    Rows that end well are kept in a `checkpoint` (SQLite; by default one file per template,
    model and parameters under the platform's cache dir; ``False`` for none), so a rerun asks
    only the rows not done, and the summary says how many it skipped. The Stop button, or an
    interrupt, stops sending rows and returns what is done: the other rows say ``not run`` (or
    ``cancelled``, for an interrupt). In a notebook the Stop button comes with ``await
    nbllm.amap(...)`` and ``%%chat --map``, which leave the kernel free to hear it; a plain
    ``nbllm.map(...)`` cell stops with the kernel's interrupt (■) and still returns the rows.

    A Dask DataFrame (``dask.dataframe``) returns a lazy Dask DataFrame whose partitions run on
    the cluster's workers (the ``dask`` extra). Keys are never sent: each worker reads its own
    (``--key-env``'s variable, ``NBLLM_<NAME>_API_KEY`` or its keyring). `concurrency`, `rpm`
    and `tpm` are for the whole cluster: each partition gets them divided by the partitions that
    run at once (the cluster's threads, at most the partitions); `max_cost`, a total, is divided
    among all the partitions. There,
    `checkpoint` names a directory (shared storage on a multi-host cluster) holding one file per
    partition; None keeps no checkpoint."""
    spec = _map_spec(template, model, options)
    checkpoint = options.get("checkpoint")
    if type(data).__module__.split(".")[0] == "dask":
        from nbllm._batch.dask_runner import map_dask

        chosen = checkpoint_path(checkpoint)
        directory = chosen if isinstance(chosen, str) else None
        return map_dask(data, spec, plan_routes(model, spec.fallback), directory)
    run = MapRun(spec, read_rows(data), checkpoint=checkpoint_path(checkpoint))
    # A plain cell keeps the kernel's loop busy: a Stop click would wait until the end, so
    # the bar offers the interrupt instead (amap and %%chat --map have the button).
    view = progress_view(_title(run), None, options.get("progress", True))
    try:
        outputs = run_with_ui(lambda _ui: run.run(), lambda: view.update(run.progress), PROGRESS_TICK_S)
    except KeyboardInterrupt:
        outputs = run.outputs()  # the rows done so far; the others say why they are missing
    view.finish(run.progress)
    return with_outputs(run.rows, outputs)


async def amap(template: str, data: Any, model: str | None = None, **options: Unpack[MapOptions]) -> Any:
    """`map`, awaited on the caller's event loop (``await nbllm.amap(...)`` in a notebook keeps
    the kernel answering widgets, so the Stop button acts at once). Not for Dask DataFrames."""
    spec = _map_spec(template, model, options)
    if type(data).__module__.split(".")[0] == "dask":
        raise PromptError("a Dask DataFrame goes to nbllm.map, which returns a lazy Dask DataFrame")
    run = MapRun(spec, read_rows(data), checkpoint=checkpoint_path(options.get("checkpoint")))
    view = progress_view(_title(run), run.stop, options.get("progress", True))
    return await run_map_with_view(run, view)


async def run_map_with_view(run: MapRun, view: ProgressView) -> Any:
    """Run `run` on this loop, redrawing `view` a few times a second; the rows done so far
    when cancelled (an interrupt in a kernel)."""

    async def redraw() -> None:
        while True:
            view.update(run.progress)
            await asyncio.sleep(PROGRESS_TICK_S)

    ticker = asyncio.ensure_future(redraw())
    try:
        outputs = await run.run()
    except asyncio.CancelledError:
        outputs = run.outputs()
    finally:
        ticker.cancel()
        view.finish(run.progress)
    return with_outputs(run.rows, outputs)


def _title(run: MapRun) -> str:
    return f"nbllm.map: {len(run.rows.records)} rows to {run.resolved.qualified_name}"
