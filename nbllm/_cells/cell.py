"""What a `%%chat` cell does, without the magic: turn the cell into a request
(`prepare_cell`), then run it (`CellRun`) with tool rounds, a live view and the
conversation's bookkeeping.

Preparation is synchronous and sends nothing: name resolution, interpolation,
tools, the capability pre-flight and context trimming all fail before any
network call. A run commits the turn to its conversation only when the reply
ended well, so re-running a failed cell does not leave half a turn behind.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic

from nbllm._calls.attempt import CallOptions
from nbllm._calls.call import stream_call
from nbllm._calls.history import CallLabels, call_labels, get_history
from nbllm._calls.preparation import prepare_call
from nbllm._calls.request import ChatRequest
from nbllm._calls.results import (
    ChatResult,
    DoneEvent,
    ReasoningEvent,
    Status,
    StatusEvent,
    TokenEvent,
    ToolCall,
    Usage,
    combine_rounds,
    estimated_usage,
)
from nbllm._calls.routes import plan_routes
from nbllm._calls.tokens import Message
from nbllm._calls.wire.reasoning import sends_reasoning_back
from nbllm._cells.approval import (
    APPROVAL_TIMEOUT_S,
    DENIAL_TEXTS,
    ApprovalGate,
    ApprovalMode,
    Approver,
    record_tool_call,
)
from nbllm._cells.conversation import (
    DEFAULT_CONVERSATION,
    Conversation,
    Conversations,
    Plan,
    get_conversations,
    plan_messages,
)
from nbllm._cells.inflight import get_in_flight
from nbllm._cells.interpolate import ImagePart, Interpolated, interpolate
from nbllm._cells.notebook_cells import get_cell_log
from nbllm._cells.summaries import DEFAULT_CONTEXT_TOKENS, ContextLevel, ContextPart
from nbllm._cells.tools import Tool, ToolOutput, error_text, outcome_text, tools_from_names
from nbllm._cells.typed import ask_typed_round, check_schema, repair_messages, typed_loop, typed_request
from nbllm._cells.ui_thread import Ui
from nbllm._cells.view import MultiView, View
from nbllm._constants import MAX_TOOL_ROUNDS
from nbllm._exceptions import (
    APIError,
    NbllmError,
    PromptError,
    SchemaMismatchError,
    StoppedError,
)
from nbllm._providers.resolved import Resolved
from nbllm._providers.store import Store, get_store

TOOL_IMAGES_TEXT = "The images the tool calls above returned, in order:"
"""Heads the message that carries tools' images to a vision model."""


@dataclass
class ChatOptions:
    """A `%%chat` line, parsed."""

    model: str | None = None
    conversation: str = DEFAULT_CONVERSATION
    new: bool = False
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    json: bool = False
    schema: str | None = None
    """The name of a pydantic model in the namespace: the reply's shape (``--schema``)."""
    tools: list[str] = field(default_factory=list)
    tool_choice: str | None = None
    max_tool_rounds: int = MAX_TOOL_ROUNDS
    stream: bool = True
    effort: str | None = None
    show_thinking: bool = False
    check_context: bool = True
    output: str | None = None
    fallback: str | None = None
    dry_run: bool = False
    interpolate: bool = True
    compare: list[str] = field(default_factory=list)
    context: ContextLevel = "sample"
    """How much of a notebook value a placeholder sends (see `nbllm._cells.summaries`)."""
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    show_context: bool = False
    cells: int = 0
    """How many of the last cells the user ran go before the prompt (``--cells N``)."""
    approve: ApprovalMode = "ask"
    """Whether a tool that is not read-only waits for the user (see `nbllm._cells.approval`)."""
    approval_timeout_s: float = APPROVAL_TIMEOUT_S


@dataclass
class PreparedCell:
    options: ChatOptions
    routes: list[Resolved]
    """The model, then its fallbacks, resolved once (see `plan_routes`)."""
    conversation: Conversation
    system: str | None
    user_message: Message
    plan: Plan
    tools: dict[str, Tool]
    schema: type[pydantic.BaseModel] | None = None
    context: list[ContextPart] = field(default_factory=list)
    """What each placeholder put in the prompt (the dry run and --show-context list them)."""

    @property
    def resolved(self) -> Resolved:
        return self.routes[0]

    def request(
        self, messages: list[Message], *, with_tools: bool, first_round: bool = True, typed: bool = True
    ) -> ChatRequest:
        """The request for one round (in --schema's shape unless not `typed`). --tool-choice binds
        the first round only: after the tools' results the model decides (a forced choice on
        every round would loop to the limit)."""
        options = self.options
        request = ChatRequest(
            messages=messages,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            seed=options.seed,
            tools=[t.schema() for t in self.tools.values()] if with_tools and self.tools else None,
            tool_choice=self.options.tool_choice if with_tools and self.tools and first_round else None,
            json_mode=options.json,
            stream=None if options.stream else False,
            effort=options.effort,
            check_context=options.check_context,
        )
        if self.schema is None or not typed:
            return request
        return typed_request(request, self.resolved, self.schema)


def with_recent_cells(prompt: Interpolated, count: int, context_tokens: int) -> Interpolated:
    """`prompt` after the last `count` cells the user ran (their code, and their outputs or
    errors, summarised), within twice one value's context budget, oldest dropped first."""
    recent = get_cell_log().context(count, 2 * context_tokens)
    if not recent:
        return prompt
    part = ContextPart(f"--cells {count}", "recent cells", recent)
    return Interpolated(f"{recent}\n\n{prompt.text}", prompt.images, [part, *prompt.parts])


def prepare_cell(
    options: ChatOptions,
    body: str,
    namespace: Mapping[str, Any],
    *,
    store: Store | None = None,
    conversations: Conversations | None = None,
    model: str | None = None,
) -> PreparedCell:
    """Everything up to the request, checked; raises an `NbllmError` and sends nothing."""
    store = store or get_store()
    conversations = conversations or get_conversations()
    if not body.strip():
        raise PromptError("the cell has no prompt; write it on the lines below %%chat")
    if options.interpolate:
        prompt = interpolate(
            body.strip(), namespace, level=options.context, context_tokens=options.context_tokens
        )
        system = interpolate(options.system, namespace).text if options.system is not None else None
    else:
        prompt, system = Interpolated(body.strip()), options.system
    if options.cells:
        prompt = with_recent_cells(prompt, options.cells, options.context_tokens)
    routes = plan_routes(model if model is not None else options.model, options.fallback, store)
    tools = tools_from_names(options.tools, namespace, options.context, options.context_tokens)
    schema = schema_from_name(options.schema, namespace) if options.schema else None
    conversation = conversations.get(options.conversation)
    if system is None and not options.new:
        system = conversation.system
    history = [] if options.new else list(conversation.turns)
    user_message: Message = {"role": "user", "content": prompt.content()}
    plan = plan_messages(
        system,
        history,
        [user_message],
        context_window=routes[0].spec.context_window,
        max_tokens=options.max_tokens,
    )
    cell = PreparedCell(
        options, routes, conversation, system, user_message, plan, tools, schema, context=prompt.parts
    )
    # The same preparation as nbllm.chat's: options checked, tool choice, capability flags.
    prepare_call(cell.request(plan.messages, with_tools=bool(tools), typed=False), routes, schema)
    return cell


def schema_from_name(name: str, namespace: Mapping[str, Any]) -> type[pydantic.BaseModel]:
    """The pydantic model a ``--schema NAME`` names in the notebook; a `PromptError` otherwise."""
    if name not in namespace:
        raise PromptError(
            f"--schema {name!r} names nothing in the notebook",
            hint="define it first, e.g. class Label(pydantic.BaseModel): label: str",
        )
    return check_schema(namespace[name])


def assistant_message(result: ChatResult, *, with_reasoning: bool = False) -> Message:
    """The model's turn as the next request repeats it. A turn that only calls tools has empty
    content: OpenAI accepts null or none there, but llama-cpp-python's server refuses null (a 500)
    and its chat template fails without the key. The thinking goes back only `with_reasoning`,
    for a turn that called tools on a provider that requires it (DeepSeek's thinking mode);
    elsewhere it is not sent, and so not counted when the conversation is trimmed."""
    message: Message = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in result.tool_calls
        ]
        if with_reasoning and result.reasoning:
            message["reasoning_content"] = result.reasoning
            if result.reasoning_signature:
                message["reasoning_signature"] = result.reasoning_signature
    return message


@dataclass
class CellOutcome:
    result: ChatResult
    error: BaseException | None = None
    value: Any = None
    """What ``-o VAR`` receives: the result, or the parsed JSON in JSON mode."""


class _ToolRoundsSpent(Exception):
    """The model still asked for tools after --max-tool-rounds: the cell ends with `outcome`."""

    def __init__(self, outcome: CellOutcome) -> None:
        super().__init__("tool rounds spent")
        self.outcome = outcome


class CellRun:
    """One run of a prepared cell: model rounds, tool calls between them, the final render."""

    def __init__(
        self,
        cell: PreparedCell,
        view: View,
        *,
        call_options: CallOptions | None = None,
        commit: bool = True,
        approver: Approver | None = None,
        labels: CallLabels | None = None,
    ) -> None:
        self.cell = cell
        self.view = view
        self.labels = labels or CallLabels()
        """Where the cell runs (its notebook and cell id, from the kernel); its conversation is
        added here."""
        self.approval = ApprovalGate(cell.options.approve, approver, cell.options.approval_timeout_s)
        self.commit = commit
        """Whether the run changes its conversation (--compare runs only read it)."""
        self.call_options = call_options or CallOptions()
        self.rounds: list[ChatResult] = []
        self.outcome: CellOutcome | None = None
        """Set when the run ends, however it ends (a cancelled run's partial text is here)."""
        self.turn: list[Message] = [cell.user_message]
        self._partial: list[str] = []  # pieces, joined once (appending to a string copies it each time)
        self._partial_reasoning: list[str] = []
        self._started = time.perf_counter()

    async def run(self, ui: Ui) -> CellOutcome:
        cell, view = self.cell, self.view
        options = cell.options
        if self.commit and options.new:
            cell.conversation.reset()
        if self.commit and options.system is not None:
            cell.conversation.system = cell.system
        ui.post(view.start)
        outcome: CellOutcome | None = None
        # Every call of this run (rounds, tools) is labelled with where it was made; the rounds
        # task below copies this context.
        call_labels.set(replace(self.labels, conversation=cell.conversation.name))
        # The rounds run as their own task so a Stop button can cancel them
        # without cancelling the cell (an interrupt cancels both).
        rounds = asyncio.ensure_future(self._rounds(ui))
        running = get_in_flight().add(self.cell.resolved.qualified_name, rounds)
        ui.post(view.offer_stop, functools.partial(get_in_flight().stop, running.id))
        try:
            outcome = await rounds
            return outcome
        except asyncio.CancelledError:
            # Task.cancelling() (3.11+) tells an interrupt that came at the same time.
            cancelling = getattr(asyncio.current_task(), "cancelling", None)
            if not running.stopped or (cancelling is not None and cancelling()):
                outcome = CellOutcome(self._partial_result("cancelled"))
                raise
            error = StoppedError(
                "stopped with the Stop button",
                hint="the reply so far is above and in nbllm.last(); run the cell again for a whole one",
            )
            outcome = CellOutcome(self._partial_result("cancelled"), error)
            return outcome
        except NbllmError as error:  # an API failure, or e.g. a key that went missing
            if isinstance(error, APIError) and error.result is not None:
                outcome = CellOutcome(combine_rounds([*self.rounds, error.result]), error)
            else:
                outcome = CellOutcome(self._partial_result("error"), error)
            return outcome
        except KeyboardInterrupt:  # an interrupt inside a tool
            outcome = CellOutcome(self._partial_result("cancelled"))
            raise
        except BaseException as error:  # a bug: the display still ends, marked failed
            outcome = CellOutcome(self._partial_result("error"), error)
            raise
        finally:
            get_in_flight().remove(running)
            assert outcome is not None  # every way out above sets it
            self.outcome = outcome
            ui.post(view.finish, outcome.result, outcome.error, self._note(outcome))

    def _note(self, outcome: CellOutcome) -> str | None:
        """The reply's footer note: what it says of its conversation, and once a session's
        notice (the log is on)."""
        notes = [n for n in (self._conversation_note(outcome), get_history().take_notice()) if n]
        return "; ".join(notes) or None

    def _conversation_note(self, outcome: CellOutcome) -> str | None:
        """That a failed turn was left out, or that a good one continued earlier cells (a bare
        %%chat continues 'default', which a notebook's separate-looking cells do not show)."""
        conversation = self.cell.conversation
        if not self.commit:
            return None
        if outcome.result.status != "ok" or outcome.error is not None:
            return f"not added to conversation {conversation.name!r}"
        turn = len(conversation.turns)
        if turn < 2:
            return None
        usage = outcome.result.usage
        prompt = f"{'~' if usage.estimated else ''}{usage.prompt_tokens:,} prompt tokens"
        return f"turn {turn} of conversation {conversation.name!r}, {prompt}; --new starts it over"

    def _partial_result(self, status: Status) -> ChatResult:
        """What this round had shown when it ended without a result of its own."""
        text, reasoning = "".join(self._partial), "".join(self._partial_reasoning).strip()
        partial = ChatResult(
            text=text,
            reasoning=reasoning,
            model=self.cell.resolved.qualified_name,
            status=status,
            latency_s=time.perf_counter() - self._started,
            # Counted as the call's own record counts a reply it did not finish: one figure.
            usage=estimated_usage(self.cell.plan.messages, text, reasoning) if text or reasoning else Usage(),
        )
        return combine_rounds([*self.rounds, partial])

    async def _rounds(self, ui: Ui) -> CellOutcome:
        cell = self.cell
        schema = cell.schema
        messages = list(cell.plan.messages)
        try:
            if schema is None:
                result = await self._tool_rounds(ui, messages)
            else:
                result = await typed_loop(
                    schema,
                    lambda: self._tool_rounds(ui, messages),
                    lambda reply, problem: self._repair_round(ui, messages, reply, problem),
                    functools.partial(ui.post, self.view.status),
                )
        except _ToolRoundsSpent as spent:
            return spent.outcome
        except SchemaMismatchError as error:  # its result sums every round already
            return CellOutcome(error.result, error)
        value: Any = result
        if schema is not None:
            value = result.parsed
        elif cell.options.json:  # the call decoded it, or failed saying why
            result.parsed = value = self.rounds[-1].parsed
        if self.commit:
            cell.conversation.add_turn(self.turn)
        return CellOutcome(result, None, value)

    async def _tool_rounds(self, ui: Ui, messages: list[Message]) -> ChatResult:
        """Model rounds, running the tools each asks for between them, until a round asks for
        none; every round so far, summed. Appends to `messages` and the turn as it goes."""
        cell = self.cell
        rounds_left = cell.options.max_tool_rounds
        while True:
            build = functools.partial(
                cell.request, messages, with_tools=bool(cell.tools), first_round=not self.rounds
            )
            result = await self._model_round(ui, build)
            reply = assistant_message(result, with_reasoning=self._sends_reasoning_back(result))
            self.turn.append(reply)
            messages.append(reply)
            if not (cell.tools and result.tool_calls):
                return combine_rounds(self.rounds)
            if rounds_left == 0:
                combined = combine_rounds(self.rounds)
                error = PromptError(
                    f"stopped after {cell.options.max_tool_rounds} tool rounds: "
                    "the model still asks for tools",
                    hint="raise --max-tool-rounds, or check that the tools give the model what it needs",
                )
                combined.status = "error"
                raise _ToolRoundsSpent(CellOutcome(combined, error))
            rounds_left -= 1
            images: list[ImagePart] = []
            for call in result.tool_calls:
                ui.post(self.view.tool_call, call)
                text, ok, returned = await self._run_tool(ui, call)
                if returned:
                    text += self._image_note(len(returned))
                    images += returned if self._sees_images() else []
                ui.post(self.view.tool_result, call, text, ok)
                tool_message = {"role": "tool", "tool_call_id": call.id, "content": text}
                self.turn.append(tool_message)
                messages.append(tool_message)
            if images:
                content: list[dict[str, Any]] = [{"type": "text", "text": TOOL_IMAGES_TEXT}]
                content += [{"type": "image_url", "image_url": {"url": i.data_url()}} for i in images]
                shown: Message = {"role": "user", "content": content}
                self.turn.append(shown)
                messages.append(shown)

    def _sees_images(self) -> bool:
        return self.cell.resolved.spec.capabilities.vision

    def _image_note(self, count: int) -> str:
        if self._sees_images():
            return f"\n({count} image(s): in the next message)"
        return f"\n({count} image(s) not sent: {self.cell.resolved.qualified_name} is not flagged vision)"

    async def _repair_round(
        self, ui: Ui, messages: list[Message], reply: ChatResult, problem: str
    ) -> ChatResult:
        """--schema's repair round: the conversation without the bad reply, then the reply and
        what is wrong with it; no tools."""
        repair = repair_messages(messages[:-1], self.rounds[-1].text, problem)
        result = await self._model_round(ui, functools.partial(self.cell.request, repair, with_tools=False))
        self.turn.append(assistant_message(result))
        return result

    async def _model_round(self, ui: Ui, build: Callable[[], ChatRequest]) -> ChatResult:
        """One model round, kept in `rounds`; a typed cell's rounds go through the typed loop's
        round (a refused schema asked again in the prompt, a reply JSON mode could not decode
        kept for the repair)."""
        if self.cell.schema is None:
            result = await self._one_round(ui, build())
        else:
            result = await ask_typed_round(
                build,
                functools.partial(self._one_round, ui),
                self.cell.resolved,
                functools.partial(ui.post, self.view.status),
            )
        self.rounds.append(result)
        return result

    def _sends_reasoning_back(self, result: ChatResult) -> bool:
        answered = next((r for r in self.cell.routes if r.qualified_name == result.model), None)
        return answered is not None and sends_reasoning_back(answered.provider)

    async def _one_round(self, ui: Ui, request: ChatRequest) -> ChatResult:
        self._partial, self._partial_reasoning = [], []
        async with aclosing(stream_call(request, self.cell.routes, self.call_options)) as events:
            async for event in events:
                if isinstance(event, TokenEvent):
                    self._partial.append(event.text)
                    ui.post_text(self.view.token, event.text)
                elif isinstance(event, ReasoningEvent):
                    self._partial_reasoning.append(event.text)
                    ui.post_text(self.view.reasoning, event.text)
                elif isinstance(event, StatusEvent):
                    ui.post(self.view.status, event)
                elif isinstance(event, DoneEvent):
                    return event.result
        raise AssertionError("a call ends with DoneEvent or an error")

    async def _run_tool(self, ui: Ui, call: ToolCall) -> tuple[str, bool, tuple[ImagePart, ...]]:
        """The tool's result as the model reads it, whether it ran well, and any images it gave."""
        tool = self.cell.tools.get(call.name)
        if tool is None:
            return (
                f"error: there is no tool named {call.name!r}; use one of {', '.join(self.cell.tools)}",
                False,
                (),
            )
        started = time.perf_counter()
        asked_by = self.cell.resolved.qualified_name
        allowed, how = await self.approval.allows(call, tool, ui)
        if not allowed:
            text = DENIAL_TEXTS.get(how, DENIAL_TEXTS["denied"])
            record_tool_call(call, asked_by, started, how, ran=False, result=text, ok=False)
            return text, False, ()
        images: tuple[ImagePart, ...] = ()
        try:
            value = await ui.call(tool.bind(call))
            if asyncio.iscoroutine(value):
                value = await value
        except Exception as exc:  # the model reads the error and may try again
            text, ok = error_text(exc), False
        else:
            if isinstance(value, ToolOutput):
                images = value.images
            text, ok = outcome_text(value.text if isinstance(value, ToolOutput) else value), True
        record_tool_call(call, asked_by, started, how, ran=True, result=text, ok=ok)
        return text, ok, images


async def run_compare(
    cells: Sequence[PreparedCell], view: MultiView, ui: Ui, call_options: CallOptions | None = None
) -> list[CellOutcome]:
    """The same prompt to several models at once; they only read the conversation."""
    runs = [
        CellRun(cell, column, call_options=call_options, commit=False)
        for cell, column in zip(cells, view.columns, strict=True)
    ]
    try:
        return list(await asyncio.gather(*(run.run(ui) for run in runs)))
    finally:
        ui.post(view.finish)
