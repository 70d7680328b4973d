"""Typed outputs: a pydantic model as the shape of the reply (``schema=``, ``%%chat --schema``).

How the schema reaches the model depends on its flags: a model flagged ``json_schema``
(structured outputs) gets it as ``response_format``, so the server constrains the reply;
any other model gets it in the prompt, with JSON mode when flagged ``json``. Either way the
reply is validated, and a reply that does not match gets one repair round: the model sees
its own reply and the validation errors and answers again. A second mismatch is a
`SchemaMismatchError` carrying the last result. A server that refuses the schema in
``response_format`` (llama-cpp-python's does) is asked again with it in the prompt, and is
not sent one again this session.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pydantic

from nbllm._calls.learned import learned
from nbllm._calls.request import ChatRequest
from nbllm._calls.results import ChatResult, StatusEvent, combine_rounds
from nbllm._exceptions import BadRequestError, PromptError, ProtocolError, SchemaMismatchError
from nbllm._providers.resolved import Resolved

Message = dict[str, Any]
REPAIR_ERRORS_SHOWN = 5
"""Validation errors quoted back to the model in the repair round (the rest are counted)."""


def check_schema(schema: Any) -> type[pydantic.BaseModel]:
    """`schema` if it is a pydantic model class; a `PromptError` that says what to give otherwise."""
    if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return schema
    shown = schema.__name__ if isinstance(schema, type) else type(schema).__name__
    raise PromptError(
        f"schema should be a pydantic model class, not {shown}",
        hint="e.g. class Label(pydantic.BaseModel): label: Literal['spam', 'ham']; then schema=Label",
    )


def json_schema_of(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The named JSON schema ``response_format`` carries (OpenAI's ``{name, schema}``)."""
    return {"name": schema.__name__, "schema": schema.model_json_schema()}


def instruction(schema: type[pydantic.BaseModel]) -> str:
    """What the prompt says when the server cannot be told the schema itself."""
    return "Reply with only a JSON object, no other text, that matches this JSON schema: " + json.dumps(
        schema.model_json_schema(), separators=(",", ":")
    )


def typed_request(request: ChatRequest, resolved: Resolved, schema: type[pydantic.BaseModel]) -> ChatRequest:
    """`request` asking for a reply of `schema`'s shape, in the way `resolved`'s flags allow."""
    flags = resolved.spec.capabilities
    if flags.json_schema and resolved.qualified_name not in learned().refused_schemas:
        return replace(request, json_schema=json_schema_of(schema), json_mode=False)
    return replace(request, messages=with_instruction(request.messages, schema), json_mode=flags.json_mode)


def with_instruction(messages: list[Message], schema: type[pydantic.BaseModel]) -> list[Message]:
    """The messages with the schema instruction at the end of the system message (one is made)."""
    text = instruction(schema)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{text}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def reply_json(text: str) -> str:
    """The JSON in a reply, without a Markdown code fence around it."""
    text = text.strip()
    if text.startswith("```"):
        text = text.partition("\n")[2].rsplit("```", 1)[0].strip()
    return text


def validate(schema: type[pydantic.BaseModel], text: str) -> pydantic.BaseModel:
    """The reply as an instance of `schema`; `ValueError` listing what is wrong otherwise."""
    try:
        return schema.model_validate_json(reply_json(text))
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        lines = [f"{'.'.join(map(str, e['loc'])) or '(the reply)'}: {e['msg']}" for e in errors]
        more = len(lines) - REPAIR_ERRORS_SHOWN
        shown = "; ".join(lines[:REPAIR_ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise ValueError(shown) from None


def repair_messages(messages: list[Message], reply: str, problem: str) -> list[Message]:
    """The conversation again, with the bad reply and what is wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That reply does not match the JSON schema: {problem}. "
            "Reply again with only the corrected JSON object.",
        },
    ]


Run = Callable[[ChatRequest], Awaitable[ChatResult]]
Announce = Callable[[StatusEvent], None]


def _quiet(event: StatusEvent) -> None:
    """Where no one watches the typed loop's steps (the API; a batch run counts retries itself)."""


async def ask_typed_round(
    build: Callable[[], ChatRequest], run: Run, resolved: Resolved, announce: Announce = _quiet
) -> ChatResult:
    """One model round of a typed call: `run` the request `build` makes. A server that refuses
    the schema in ``response_format`` is asked again at once with it in the prompt (`build`
    reads what was learned), and that counts as a retry; a reply that JSON mode could not
    decode is returned as it is, for the repair round to fix."""
    asking = build()
    try:
        return await _tolerating_bad_json(asking, run)
    except BadRequestError as error:
        if not learn_refusal(error, asking, resolved):
            raise
    announce(StatusEvent("retry", "the server refused the schema; asking with it in the prompt"))
    result = await _tolerating_bad_json(build(), run)
    result.retries += 1
    return result


async def typed_loop(
    schema: type[pydantic.BaseModel],
    first: Callable[[], Awaitable[ChatResult]],
    repair: Callable[[ChatResult, str], Awaitable[ChatResult]],
    announce: Announce = _quiet,
) -> ChatResult:
    """The one typed-output loop (`nbllm.chat`, `nbllm.map` and ``%%chat --schema``): the reply
    `first` gets, validated against `schema`; if it does not match, one `repair` round (given
    the reply and what is wrong with it). Returns the rounds summed (`combine_rounds`) with the
    instance on ``parsed``; raises `SchemaMismatchError` carrying that sum when the repaired
    reply does not match either."""
    rounds = [await first()]
    try:
        rounds[0].parsed = validate(schema, rounds[0].text)
        return rounds[0]
    except ValueError as exc:
        problem = str(exc)
    announce(StatusEvent("retry", f"the reply does not match {schema.__name__}; repairing"))
    rounds.append(await repair(rounds[0], problem))
    result = combine_rounds(rounds)
    try:
        result.parsed = validate(schema, rounds[-1].text)
        return result
    except ValueError as exc:
        result.status = "error"
        result.error = f"the reply does not match {schema.__name__}: {exc}"
        raise mismatch(result, schema, str(exc)) from None


async def run_typed(
    request: ChatRequest, resolved: Resolved, schema: type[pydantic.BaseModel], run: Run
) -> ChatResult:
    """A typed call of one round (and its repair): `typed_loop` over `run`, for the API and
    batch runs. Raises `SchemaMismatchError` (the last result on ``.result``)."""

    def build() -> ChatRequest:
        return typed_request(request, resolved, schema)

    def repairing(reply: ChatResult, problem: str) -> Callable[[], ChatRequest]:
        return lambda: replace(build(), messages=repair_messages(build().messages, reply.text, problem))

    return await typed_loop(
        schema,
        lambda: ask_typed_round(build, run, resolved),
        lambda reply, problem: ask_typed_round(repairing(reply, problem), run, resolved),
    )


def mismatch(result: ChatResult, schema: type[pydantic.BaseModel], problem: str) -> SchemaMismatchError:
    """The error for a reply that still does not match after its repair round (`result` on it)."""
    error = SchemaMismatchError(
        f"{result.model}'s reply does not match {schema.__name__}, even after a repair round: {problem}",
        hint="flag the model json_schema if its server supports structured outputs, simplify the "
        "schema, or use a stronger model; the reply is on the error's .result.text (and nbllm.last())",
        request_id=result.request_id,
    )
    error.result = result
    return error


def learn_refusal(error: BadRequestError, asked: ChatRequest, resolved: Resolved) -> bool:
    """Whether `error` is the server refusing the schema `asked` sent in ``response_format``.
    If so, typed requests to the model put the schema in the prompt from now on in this session
    (the error has told the user how to turn the flag off for good)."""
    if asked.json_schema is None or "response_format" not in error.message:
        return False
    learned().refused_schemas.add(resolved.qualified_name)
    return True


async def _tolerating_bad_json(request: ChatRequest, run: Run) -> ChatResult:
    """One round; a reply JSON mode could not decode still gets its repair round."""
    try:
        return await run(request)
    except ProtocolError as error:
        partial = error.result
        if not isinstance(partial, ChatResult) or not partial.text:
            raise
        return partial
