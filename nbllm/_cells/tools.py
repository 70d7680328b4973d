"""Python functions as tools: a JSON schema from the signature and docstring, and
running a model's call with validated arguments.

The schema comes from a pydantic model built from the parameters (their type
hints and defaults); descriptions come from the docstring's first paragraph and
its ``Args:`` (Google) or ``:param x:`` (Sphinx) entries. A failing tool does not
end the conversation: its error goes back to the model as the tool's result.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from nbllm._calls.results import ToolCall
from nbllm._cells.interpolate import ImagePart
from nbllm._exceptions import ToolError

RESULT_CHARS_LIMIT = 20_000
"""A tool result longer than this is cut before it goes back to the model (and says so)."""


def _doc_parts(function: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The summary paragraph and per-parameter descriptions of a docstring."""
    doc = inspect.getdoc(function) or ""
    summary = doc.split("\n\n")[0].strip().replace("\n", " ")
    params: dict[str, str] = {}
    for name, text in re.findall(r"^\s*:param\s+(?:\w+\s+)?(\w+):\s*(.+)$", doc, re.MULTILINE):
        params[name] = text.strip()
    section = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.+\n?)+)", doc, re.MULTILINE)
    if section:
        for name, text in re.findall(
            r"^[ \t]+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$", section.group(1), re.MULTILINE
        ):
            params.setdefault(name, text.strip())
    if summary.startswith((":param", "Args:", "Arguments:", "Parameters:")):
        summary = ""
    return summary, params


@dataclass(frozen=True)
class ToolDeclaration:
    """What `nbllm.tool` says of a function: whether it only reads, and its name and
    description for the model when they differ from the function's."""

    read_only: bool = False
    name: str | None = None
    description: str | None = None


DECLARATION_ATTRIBUTE = "__nbllm_tool__"


F = typing.TypeVar("F", bound=Callable[..., Any])


@typing.overload
def tool(
    function: F, *, read_only: bool = False, name: str | None = None, description: str | None = None
) -> F: ...


@typing.overload
def tool(
    function: None = None, *, read_only: bool = False, name: str | None = None, description: str | None = None
) -> Callable[[F], F]: ...


def tool(
    function: Callable[..., Any] | None = None,
    *,
    read_only: bool = False,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Declare a Python function as a tool: ``@nbllm.tool(read_only=True)`` says it only reads,
    so it runs without asking (a tool that is not read-only waits for the user's approval, see
    ``%%chat --approve``); `name` and `description` replace the function's own for the model.
    Works bare (``@nbllm.tool``) too; the function is returned unchanged otherwise."""

    def declare(target: Callable[..., Any]) -> Callable[..., Any]:
        setattr(target, DECLARATION_ATTRIBUTE, ToolDeclaration(read_only, name, description))
        return target

    return declare if function is None else declare(function)


@dataclass(frozen=True)
class Tool:
    name: str
    function: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    description: str
    read_only: bool = False
    """Declared with ``@nbllm.tool(read_only=True)``: runs without the user's approval."""
    always_ask: bool = False
    """Asks even under ``--approve auto`` (``run_python``: it runs code the model wrote)."""

    @classmethod
    def from_callable(cls, function: Callable[..., Any], name: str | None = None) -> Tool:
        declared = getattr(function, DECLARATION_ATTRIBUTE, None)
        if not isinstance(declared, ToolDeclaration):
            declared = ToolDeclaration()
        name = declared.name or name or getattr(function, "__name__", "")
        if not callable(function) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name or ""):
            raise ToolError(
                f"{name or function!r} cannot be a tool: a tool is a Python function whose name has "
                "only letters, digits, _ and - (at most 64)"
            )
        try:
            signature = inspect.signature(function)
            hints = typing.get_type_hints(function)
        except (TypeError, ValueError, NameError) as exc:
            raise ToolError(
                f"tool {name}: cannot read its signature ({exc}); give it plain type hints"
            ) from None
        summary, described = _doc_parts(function)
        fields: dict[str, Any] = {}
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue  # *args/**kwargs cannot be described to a model; they stay unused
            annotation = hints.get(parameter.name, Any)
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (
                annotation,
                pydantic.Field(default, description=described.get(parameter.name)),
            )
        try:
            model = pydantic.create_model(f"{name}_arguments", **fields)
            model.model_json_schema()
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError) as exc:
            first = str(exc).split("\n")[0]
            raise ToolError(
                f"tool {name}: its parameters cannot be described as JSON ({first}); "
                "use JSON-like hints (str, int, float, bool, list, dict, pydantic models)"
            ) from None
        description = declared.description or summary or f"The Python function {name}."
        return cls(str(name), function, model, description, declared.read_only)

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this function."""
        parameters = self.arguments_model.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }

    def bind(self, call: ToolCall) -> Callable[[], Any]:
        """A thunk that runs the function with the call's validated arguments (raises on bad ones)."""
        arguments = self.arguments_model.model_validate_json(call.arguments or "{}")
        values = {name: getattr(arguments, name) for name in type(arguments).model_fields}
        return lambda: self.function(**values)


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns when it has images as well as text (an MCP tool's result): the text
    goes back as the tool's result, the images, to a model flagged ``vision``, in a message
    after the round's results (a tool message carries text only in the OpenAI shape)."""

    text: str
    images: tuple[ImagePart, ...] = ()


def outcome_text(value: Any) -> str:
    """A tool's return value as the text the model reads: strings as they are, else JSON."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, pydantic.BaseModel):
        text = value.model_dump_json()
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > RESULT_CHARS_LIMIT:
        text = text[:RESULT_CHARS_LIMIT] + f"\n[cut: the result had {len(text)} characters]"
    return text


def error_text(exc: BaseException) -> str:
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        return f"error: invalid arguments: {problems}"
    if isinstance(exc, json.JSONDecodeError):
        return f"error: the arguments are not valid JSON: {exc}"
    return f"error: {type(exc).__name__}: {exc}"


def tools_from_names(
    names: Sequence[str], namespace: Mapping[str, Any], level: Any = "sample", context_tokens: int = 1_500
) -> dict[str, Tool]:
    """Look up each name in the user's namespace and describe it as a tool; ``notebook``
    stands for the read-only notebook tools, ``run_python`` for the one tool that runs code
    (`nbllm._cells.notebook_tools`), ``mcp:NAME`` for an MCP server's tools."""
    tools: dict[str, Tool] = {}
    for name in names:
        if name.startswith("mcp:"):
            from nbllm._cells.mcp_servers import tools_of

            tools.update(tools_of(name))
            continue
        if name == "notebook":
            from nbllm._cells.notebook_tools import notebook_tools

            tools.update(notebook_tools(namespace, level, context_tokens))
            continue
        if name == "run_python" and name not in namespace:
            from nbllm._cells.notebook_tools import run_python_tool

            tools["run_python"] = run_python_tool(namespace)
            continue
        if name not in namespace:
            raise ToolError(f"--tools names {name!r}, but no such function is defined; define it first")
        value = namespace[name]
        if not callable(value) or isinstance(value, type):
            raise ToolError(f"--tools names {name!r}, which is a {type(value).__name__}, not a function")
        described = Tool.from_callable(value, name)
        tools[described.name] = described
    return tools
