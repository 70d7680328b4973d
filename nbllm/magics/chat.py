"""`%%chat` and `%llm_history`. They parse arguments and delegate to `nbllm._cells.cell`.

How a cell runs (see DESIGN, "Running async work from a magic"): in a kernel with
autoawait on, `chat_cell_transformer` rewrites a ``%%chat`` cell into a top-level
``await run_chat_cell(line, body)``, so the stream runs on the kernel's own loop:
an interrupt is a clean cancellation and widget messages (the panel's Stop
button) are handled while tokens flow. Otherwise (``run_cell_magic``,
``%autoawait off``, terminal IPython) the call runs on the background event
loop while this thread renders.
"""

from __future__ import annotations

import asyncio
import keyword
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, observe, validate

from nbllm._cells.ui_thread import DirectUi, Ui, run_with_ui
from nbllm._constants import (
    CONTEXT_LEVELS,
    DEFAULT_CONTEXT_TOKENS,
    EFFORTS,
    LIVE_ENV,
    MAX_TOOL_ROUNDS,
    RENDER_TICK_S,
    THROTTLE_MS,
)
from nbllm._exceptions import (
    CapabilityError,
    ContextTooLongError,
    LocalModelError,
    MissingKeyError,
    NameResolutionError,
    NbllmError,
    ProviderNotFoundError,
)
from nbllm._providers.secret_text import mask_secrets
from nbllm.magics.parsing import parse_line, usage_errors, warn

if TYPE_CHECKING:
    from nbllm._calls.history import CallLabels
    from nbllm._cells.cell import ChatOptions

CHAT_HELP_TAIL = """
The cell body is the prompt. {name}, {name.attr} and {name[key]} are filled in from
your variables ({{name}} gives literal braces; other braces, such as JSON, are left
alone; --no-interp sends the text as written). A variable holding an image
(IPython.display.Image, a PIL image) is sent as an image to a vision model.

Configure with %config ChatMagics.throttle_ms = 100, ChatMagics.display_mode = 'final',
or NBLLM_LIVE=0 in the environment for headless runs (nbval, nbconvert).
"""


@dataclass
class _Job:
    """A prepared cell: its view, the coroutine that runs it, and what to do after."""

    tick: Callable[[], None]
    start: Callable[[Ui], Coroutine[Any, Any, Any]]
    conclude: Callable[[Any], None]
    on_cancel: Callable[[], None] = lambda: None


REFUSALS = (
    NameResolutionError,
    ProviderNotFoundError,
    CapabilityError,
    ContextTooLongError,
    MissingKeyError,
    LocalModelError,
)
"""Refusals before sending that are about the model or provider, shown as the card a failed
call shows. A mistake in the cell's own line or text (an option's value, a {name} that is not
defined) stays a one-line UsageError, as for any magic."""


def show_error(error: NbllmError, model: str | None, line: str) -> None:
    """The error card for a cell refused before anything was sent (a misspelt model, a flag
    the model lacks), as a failed call shows it; any word of the line that could be a key
    masked."""
    from nbllm._views.reply import error_card_markdown, error_card_text

    words = line.split()
    display(
        {
            "text/markdown": mask_secrets(error_card_markdown(error, model), words),
            "text/plain": mask_secrets(error_card_text(error), words),
        },
        raw=True,
    )


INTERRUPTED = "interrupted: the reply above is partial (nbllm.last() holds it)"
"""What an interrupted cell raises: one line under the final frame, as after the panel's Stop,
never a traceback through the HTTP stack; the cell still fails, so Run All stops there."""


def where_in_notebook(shell: Any) -> CallLabels:
    """The notebook (its path, where the front end says it: JupyterLab's ``__session__``, VS
    Code's ``__vsc_ipynb_file__``) and the running cell's id (from the execute request's
    metadata, which JupyterLab and Notebook 7 send), for the calls' records."""
    from nbllm._calls.history import CallLabels  # with the cell's run, not at %load_ext

    namespace = getattr(shell, "user_ns", {}) or {}
    notebook = namespace.get("__vsc_ipynb_file__") or namespace.get("__session__")
    cell_id = None
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and hasattr(kernel, "get_parent"):
        try:
            cell_id = ((kernel.get_parent() or {}).get("metadata") or {}).get("cellId")
        except Exception:  # a kernel of another kind: the label is only a help
            cell_id = None
    return CallLabels(notebook=str(notebook) if notebook else None, cell_id=str(cell_id) if cell_id else None)


def _split_names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


@magics_class
class ChatMagics(Magics):
    """`%%chat` and `%llm_history`; configurable with ``%config ChatMagics.<trait>``."""

    throttle_ms = Int(
        THROTTLE_MS,
        config=True,
        help="Shortest interval between live updates of a streaming reply, in milliseconds.",
    )
    display_mode = Enum(
        ["auto", "live", "final", "terminal"],
        "auto",
        config=True,
        help="auto: live in a notebook (final if $NBLLM_LIVE=0), stdout in a terminal; "
        "live: update the output as tokens arrive; final: render once at the end; "
        "terminal: write tokens to stdout.",
    )
    widgets = Bool(
        True,
        config=True,
        help="Draw the live thinking section and progress bars as ipywidgets; False (or "
        "$NBLLM_WIDGETS=0) for front ends without a widget manager: thinking streams as dimmed "
        "Markdown above the answer, progress as text.",
    )
    max_tool_rounds = Int(
        MAX_TOOL_ROUNDS, config=True, help="Default for --max-tool-rounds: tool-call rounds per cell."
    )
    remote_images = Bool(
        False,
        config=True,
        help="Show remote images in replies as images. Off by default: a reply (or a prompt "
        "injection in what the model read) could make the browser fetch a URL carrying your data, "
        "so remote images show as links; data: images always show.",
    )

    context = Enum(
        list(CONTEXT_LEVELS),
        "sample",
        config=True,
        help="Default for --context: what a {placeholder} of a DataFrame, array, text or container "
        "sends. schema: names, types and shapes, no values; sample: a compact summary with a few "
        "rows; full: its str(), as written.",
    )
    tool_approval = Enum(
        ["ask", "auto", "never"],
        "ask",
        config=True,
        help="Default for --approve: ask before a tool that is not declared read-only runs "
        "(@nbllm.tool(read_only=True)); auto runs every tool; never runs only read-only ones.",
    )
    approval_timeout_s = Float(
        120.0,
        config=True,
        help="How long a tool call waits for Approve or Deny before it is denied (Run All never hangs).",
    )
    context_tokens = Int(
        DEFAULT_CONTEXT_TOKENS, config=True, help="Default for --context-tokens: one value's summary size."
    )

    log = Unicode(
        "",
        config=True,
        help="The conversation log: '' (off, the default), 'on' (the default path in the user data "
        "folder) or a database path; the same as %llm_log on [PATH] / off.",
    )

    @observe("log")
    def _log_changed(self, change: Any) -> None:
        from nbllm._log.writer import check_path, get_log

        value = str(change["new"]).strip()
        try:
            if not value or value == "off":
                get_log().turn_off()
            else:
                get_log().turn_on(None if value == "on" else check_path(value))
        except NbllmError as exc:
            raise TraitError(str(exc)) from None

    @validate("throttle_ms", "max_tool_rounds", "context_tokens")
    def _not_negative(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(f"{proposal['trait'].name} cannot be negative")
        return int(proposal["value"])

    # -- %%chat ------------------------------------------------------------------

    @magic_arguments()
    @argument("model", nargs="?", help="PROVIDER/MODEL or a unique model id; default: the default model.")
    @argument("-c", "--conversation", default="default", metavar="NAME", help="Conversation to continue.")
    @argument(
        "--new", action="store_true", help="Start the conversation afresh (forget its turns and system)."
    )
    @argument("--system", metavar="TEXT", help="System prompt for this conversation (kept for later cells).")
    @argument("-t", "--temperature", type=float, metavar="T", help="Sampling temperature.")
    @argument("--max-tokens", type=int, metavar="N", help="Longest reply, in tokens.")
    @argument("--seed", type=int, metavar="N", help="Sampling seed, where the server supports one.")
    @argument("--json", action="store_true", help="JSON mode; -o VAR receives the parsed object.")
    @argument(
        "--schema",
        metavar="MODEL",
        help="A pydantic model in the notebook: the reply's shape; -o VAR receives the instance.",
    )
    @argument(
        "--map",
        metavar="DF",
        help="Run the cell as a template over every row of DF ({column}); -o VAR receives the table.",
    )
    @argument("--concurrency", type=int, metavar="N", help="With --map: rows in flight at once (default 8).")
    @argument("--rpm", type=float, metavar="N", help="With --map: requests per minute to the provider.")
    @argument("--tpm", type=int, metavar="N", help="With --map: tokens per minute to the provider.")
    @argument("--max-cost", type=float, metavar="USD", help="With --map: stop sending rows past this cost.")
    @argument(
        "--checkpoint",
        metavar="PATH",
        help="With --map: the checkpoint file (default: one in the cache dir; 'none' keeps none).",
    )
    @argument(
        "--effort",
        choices=EFFORTS,
        help="How hard a reasoning model thinks; none turns thinking off where the server allows it.",
    )
    @argument(
        "--remote-images",
        action="store_true",
        help="Show remote images in this reply as images (links by default; see ChatMagics.remote_images).",
    )
    @argument(
        "--show-thinking",
        action="store_true",
        help="Show a reasoning model's thinking open in the final output (it is collapsed otherwise).",
    )
    @argument("--tools", metavar="F,G", help="Python functions the model may call.")
    @argument(
        "--max-tool-rounds", type=int, metavar="N", help="Tool-call rounds before stopping (default 5)."
    )
    @argument(
        "--tool-choice",
        metavar="CHOICE",
        help="auto (default), required, none, or a tool's name: whether and which tool the model must call.",
    )
    @argument(
        "--no-check-context",
        action="store_true",
        help="Send even a prompt that does not seem to fit the model's context window.",
    )
    @argument("--no-stream", action="store_true", help="Ask for the whole reply at once.")
    @argument("-o", "--output", metavar="VAR", help="Store the ChatResult (or the JSON object) in VAR.")
    @argument("--fallback", metavar="M1,M2", help="Models to try, in order, if this one fails.")
    @argument("--compare", metavar="M1,M2", help="Send the prompt to several models at once, side by side.")
    @argument("--dry-run", action="store_true", help="Show the request (key masked) without sending it.")
    @argument("--no-interp", action="store_true", help="Send the cell as written: no {name} interpolation.")
    @argument(
        "--context",
        choices=CONTEXT_LEVELS,
        help="What a {placeholder} of a DataFrame, array, text or container sends: schema (names, "
        "types, shapes; no values), sample (a compact summary with a few rows; the default) or full "
        "(its str()).",
    )
    @argument(
        "--context-tokens", type=int, metavar="N", help="About how many tokens one value's summary may take."
    )
    @argument(
        "--show-context", action="store_true", help="Show what each {placeholder} sends, above the reply."
    )
    @argument(
        "--approve",
        choices=["ask", "auto", "never"],
        help="Before a tool that is not declared read-only runs: ask (the default: Approve/Deny "
        "buttons, denied after 120 s), auto (run it), never (deny it).",
    )
    @argument(
        "--cells",
        type=int,
        metavar="N",
        help="Send the last N cells you ran (code, and outputs or errors, summarised) before the prompt.",
    )
    @cell_magic
    def chat(self, line: str, cell: str) -> None:
        """Send the cell to a model and stream the reply into the output."""
        job = self._job(line, cell)
        if job is None:
            return
        try:
            outcome = run_with_ui(job.start, job.tick, RENDER_TICK_S)
        except KeyboardInterrupt:
            job.on_cancel()
            raise UsageError(INTERRUPTED) from None
        job.conclude(outcome)

    chat.__doc__ = (chat.__doc__ or "") + CHAT_HELP_TAIL

    async def chat_async(self, line: str, cell: str) -> None:
        """The same as `chat`, awaited on the kernel's loop (see the module docstring)."""
        job = self._job(line, cell, awaited=True)
        if job is None:
            return
        ticker = asyncio.create_task(self._tick_forever(job.tick))
        try:
            outcome = await job.start(DirectUi())
        except (asyncio.CancelledError, KeyboardInterrupt):
            job.on_cancel()
            raise UsageError(INTERRUPTED) from None
        finally:
            ticker.cancel()
        job.conclude(outcome)

    # -- %explain ----------------------------------------------------------------

    @line_cell_magic
    def explain(self, line: str, cell: str | None = None) -> None:
        """Ask why the last exception happened and how to fix it: the failing cell's code, the
        error, the traceback's frames with their lines (library frames collapsed) and the failing
        frame's local variables, summarised. ``%%explain`` adds your question from the cell. The
        line takes %%chat's options (a model, -c, --effort, ...)."""
        self.chat(f"{line} --no-interp", self._explain_prompt(cell))

    async def explain_async(self, line: str, cell: str | None) -> None:
        await self.chat_async(f"{line} --no-interp", self._explain_prompt(cell))

    def _explain_prompt(self, question: str | None) -> str:
        import sys
        import traceback

        from nbllm._cells.notebook_cells import explain_prompt, get_cell_log

        log = get_cell_log()
        exc = log.last_exception or getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if exc is None:
            raise UsageError("there is no error to explain yet: run the cell that fails, then %explain")
        numbers = getattr(getattr(self.shell, "compile", None), "_filename_map", {})
        history = self.shell.user_ns.get("In", []) if self.shell is not None else []

        def cell_name(filename: str) -> str | None:
            number = numbers.get(filename)
            return None if number is None else f"In [{number}]"

        code = log.last_failed.code if log.last_failed is not None and exc is log.last_exception else None
        if code is None:  # a post-mortem of an error from before nbllm was loaded
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in numbers]
            if frames and 0 <= numbers[frames[0].filename] < len(history):
                code = history[numbers[frames[0].filename]]
        return explain_prompt(exc, code, question, cell_name=cell_name)

    @staticmethod
    async def _tick_forever(tick: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(RENDER_TICK_S)
            tick()

    def _options(self, line: str) -> tuple[ChatOptions, Any]:
        """The line, parsed once: the cell's options, and the arguments only --map uses."""
        from nbllm._cells.cell import ChatOptions

        args = parse_line(self.chat, line)
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(f"-o needs a variable name, not {args.output!r}")
        rounds = self.max_tool_rounds if args.max_tool_rounds is None else args.max_tool_rounds
        if rounds < 0:
            raise UsageError("--max-tool-rounds cannot be negative")
        if args.tool_choice is not None and not args.tools:
            raise UsageError("--tool-choice goes with --tools; name the functions the model may call")
        map_only = [
            f for f in ("concurrency", "rpm", "tpm", "max_cost", "checkpoint") if getattr(args, f) is not None
        ]
        if map_only and not args.map:
            raise UsageError(f"--{map_only[0].replace('_', '-')} goes with --map DF")
        if args.map and (args.tools or args.compare or args.json):
            raise UsageError(
                "--map runs one call per row: it takes --schema, not --tools, --compare or --json"
            )
        options = ChatOptions(
            model=args.model,
            conversation=args.conversation,
            new=args.new,
            system=args.system,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            seed=args.seed,
            json=args.json,
            schema=args.schema,
            tools=_split_names(args.tools),
            tool_choice=args.tool_choice,
            max_tool_rounds=rounds,
            stream=not args.no_stream,
            effort=args.effort,
            show_thinking=args.show_thinking,
            check_context=not args.no_check_context,
            output=args.output,
            fallback=args.fallback,
            dry_run=args.dry_run,
            interpolate=not args.no_interp,
            compare=_split_names(args.compare),
            context=args.context or str(self.context),  # type: ignore[arg-type]  # both are CONTEXT_LEVELS
            context_tokens=self.context_tokens if args.context_tokens is None else args.context_tokens,
            show_context=args.show_context,
            cells=args.cells or 0,
            approve=args.approve or str(self.tool_approval),  # type: ignore[arg-type]  # both are the modes
            approval_timeout_s=max(0.0, float(self.approval_timeout_s)),
        )
        if options.cells < 0:
            raise UsageError("--cells needs a number of cells, e.g. --cells 3")
        if options.context_tokens < 50:
            raise UsageError("--context-tokens needs at least 50 tokens, e.g. --context-tokens 1500")
        if options.compare and options.tools:
            raise UsageError("--compare cannot run tools; drop --tools, or chat with one model at a time")
        if options.compare and options.model:
            raise UsageError("give the models to compare in --compare only, e.g. --compare a/m1,b/m2")
        return options, args

    def _mode(self) -> str:
        if self.display_mode != "auto":
            return str(self.display_mode)
        if os.environ.get(LIVE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
            return "final"
        return "live" if getattr(self.shell, "kernel", None) is not None else "terminal"

    def _job(self, line: str, cell: str, *, awaited: bool = False) -> _Job | None:
        # The cell layer (httpx, pydantic) is imported on the first %%chat, not at %load_ext.
        from nbllm._calls.history import set_last
        from nbllm._cells.cell import CellOutcome, CellRun, prepare_cell
        from nbllm._providers.local import ensure_a_provider
        from nbllm._providers.store import get_store
        from nbllm._views.dry_run import ContextShown, DryRun
        from nbllm._views.progress import widgets_enabled
        from nbllm._views.reply import LiveView, TerminalView, Throttle, error_line

        namespace = self.shell.user_ns if self.shell is not None else {}
        with usage_errors(line):
            options, args = self._options(line)
            ensure_a_provider(get_store(), print)
            try:
                if args.map:
                    return self._map_job(args, options, cell, namespace)
                if options.compare:
                    return self._compare_job(options, cell, namespace)
                prepared = prepare_cell(options, cell, namespace)
            except REFUSALS as refused:  # nothing was sent: the same card as a failed call
                model = options.model or next(iter(options.compare), None) or get_store().default
                show_error(refused, model, line)
                raise UsageError(error_line(refused, sent=False)) from None
            if options.dry_run:
                display(DryRun.of(prepared))
                return None
            if options.show_context and prepared.context:
                display(ContextShown(tuple(prepared.context)))
        if not prepared.plan.fits:
            warn(
                f"{prepared.plan.summary()}: the newest message alone may not fit "
                f"{prepared.resolved.qualified_name}'s context window; the server may refuse or cut it"
            )
        mode = self._mode()
        model = prepared.resolved.qualified_name
        view: LiveView | TerminalView
        if mode == "terminal":
            view = TerminalView(model, show_thinking=options.show_thinking)
        else:
            live, throttle = mode == "live", Throttle(self.throttle_ms / 1000)
            view = LiveView(
                model,
                live=live,
                throttle=throttle,
                show_thinking=options.show_thinking,
                remote_images=self.remote_images or args.remote_images,
                widgets=self.widgets and widgets_enabled(),
            )
        run = CellRun(prepared, view, approver=self._approver(awaited), labels=where_in_notebook(self.shell))

        def conclude(outcome: CellOutcome) -> None:
            set_last(outcome.result)
            if outcome.error is not None:  # the final frame's card says what happened
                raise UsageError(error_line(outcome.error))
            if options.output:
                namespace[options.output] = outcome.value

        def on_cancel() -> None:
            if run.outcome is not None:
                set_last(run.outcome.result)

        return _Job(view.tick, run.run, conclude, on_cancel)

    def _approver(self, awaited: bool) -> Any:
        """Who asks before a tool that is not read-only runs: buttons where a click can be heard
        (a cell awaited on the kernel's loop, with widgets), else a prompt."""
        from nbllm._cells.approval import PromptApprover
        from nbllm._views.progress import widgets_enabled

        if awaited and self.widgets and widgets_enabled() and getattr(self.shell, "kernel", None) is not None:
            from nbllm._views.approval_widget import WidgetApprover

            return WidgetApprover()
        return PromptApprover()

    def _compare_job(self, options: ChatOptions, cell: str, namespace: dict[str, Any]) -> _Job | None:
        from nbllm._calls.history import set_last
        from nbllm._cells.cell import CellOutcome, prepare_cell, run_compare
        from nbllm._views.compare import CompareView
        from nbllm._views.dry_run import DryRun
        from nbllm._views.reply import Throttle

        prepared = [prepare_cell(options, cell, namespace, model=name) for name in options.compare]
        if options.dry_run:
            for each in prepared:
                display(DryRun.of(each))
            return None
        names = [p.resolved.qualified_name for p in prepared]
        if len(set(names)) != len(names):
            raise UsageError(f"--compare names the same model twice: {', '.join(names)}")
        mode = self._mode()
        view = CompareView(names, live=mode == "live", throttle=Throttle(self.throttle_ms / 1000))

        def conclude(outcomes: list[CellOutcome]) -> None:
            set_last(outcomes[-1].result)
            if all(o.error is not None for o in outcomes):
                raise UsageError("every model in --compare failed (details above)")
            if options.output:
                namespace[options.output] = {
                    o.result.model if o.error is None else name: o.value if o.error is None else o.result
                    for name, o in zip(names, outcomes, strict=True)
                }

        return _Job(view.tick, lambda ui: run_compare(prepared, view, ui), conclude)

    def _map_job(self, args: Any, options: ChatOptions, cell: str, namespace: dict[str, Any]) -> _Job:
        """``%%chat --map DF``: the cell as a template over DF's rows, with a progress bar."""
        from nbllm._batch.rows import read_rows, with_outputs
        from nbllm._batch.run import MapRun, checkpoint_path, map_spec
        from nbllm._cells.cell import schema_from_name
        from nbllm._views.progress import progress_view

        if args.map not in namespace:
            raise UsageError(f"--map {args.map!r} names nothing in the notebook; give a DataFrame's name")
        given = {
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
            "seed": options.seed,
            "effort": options.effort,
            "schema": schema_from_name(options.schema, namespace) if options.schema else None,
            "system": options.system,
            "concurrency": args.concurrency,
            "rpm": args.rpm,
            "tpm": args.tpm,
            "max_cost": args.max_cost,
            "fallback": options.fallback,
        }
        spec = map_spec(cell.strip(), options.model, given)
        checkpoint = checkpoint_path(args.checkpoint)
        run = MapRun(spec, read_rows(namespace[args.map]), checkpoint=checkpoint, namespace=namespace)
        view = progress_view(
            f"%%chat --map {args.map}: {len(run.rows.records)} rows to {run.resolved.qualified_name}",
            run.stop,
        )

        def store_rows() -> Any:
            view.finish(run.progress)
            table = with_outputs(run.rows, run.outputs())
            if options.output:
                namespace[options.output] = table
            return table

        def conclude(_: Any) -> None:
            table = store_rows()
            if not options.output:
                display(table)

        return _Job(lambda: view.update(run.progress), lambda _ui: run.run(), conclude, store_rows)

    # -- %llm_history --------------------------------------------------------------

    @magic_arguments()
    @argument("-n", type=int, default=20, metavar="N", help="How many recent calls to show (default 20).")
    @line_magic
    def llm_history(self, line: str) -> None:
        """The recent calls: time, model, status, time to first token, latency, tokens, errors."""
        from nbllm._calls.history import get_history
        from nbllm._views.tables import HistoryTable

        args = parse_line(self.llm_history, line)
        if args.n < 1:
            raise UsageError("-n must be at least 1")
        history = get_history()
        display(HistoryTable(history.records()[-args.n :], history.summaries()))


AWAITED_MAGICS = {"%%chat": "run_chat_cell", "%%explain": "run_explain_cell", "%explain": "run_explain_cell"}
"""Cells that become a top-level await in a kernel, so widget messages (Stop) are heard."""


def chat_cell_transformer(lines: list[str]) -> list[str]:
    """Rewrite a ``%%chat`` or ``%explain`` cell into a top-level await, in a kernel with
    autoawait on."""
    if not lines or not lines[0].startswith(("%%chat", "%%explain", "%explain")):
        return lines
    first = lines[0].rstrip("\r\n")
    magic = first.split(maxsplit=1)[0] if first.strip() else ""
    if magic not in AWAITED_MAGICS or first.rstrip().endswith("?"):
        return lines  # %%chatty, or %%chat? (help)
    if magic == "%explain" and "".join(lines[1:]).strip():
        return lines  # a line magic among other code: IPython runs it as written
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not shell.autoawait or getattr(shell, "kernel", None) is None:
        return lines
    line = first[len(magic) :].strip()
    body = "".join(lines[1:]) if magic != "%explain" else None
    runner = AWAITED_MAGICS[magic]
    call = f"await __import__('nbllm.magics.chat').magics.chat.{runner}({line!r}, {body!r})\n"
    return [call]


async def run_explain_cell(line: str, question: str | None) -> None:
    """What a transformed ``%explain`` or ``%%explain`` cell awaits."""
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("ChatMagics") if shell is not None else None
    if magics is None:
        raise UsageError("nbllm is not loaded in this kernel; run %load_ext nbllm first")
    await magics.explain_async(line, question)


async def run_chat_cell(line: str, body: str) -> None:
    """What a transformed ``%%chat`` cell awaits."""
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("ChatMagics") if shell is not None else None
    if magics is None:
        raise UsageError("nbllm is not loaded in this kernel; run %load_ext nbllm first")
    await magics.chat_async(line, body)
