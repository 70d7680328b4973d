"""``%%chat --tools notebook``: read-only tools over the kernel, for a model to look around.

- ``list_variables``: the user's variables with their types and sizes (never their values);
- ``describe_variable``: one variable, summarised at the cell's ``--context`` level (the same
  summaries a ``{placeholder}`` sends, so ``schema`` still sends no values);
- ``recent_cells``: the last cells the user ran, their code and outputs or errors;
- ``last_error``: the last exception, as ``%explain`` describes it.

They run no code the user did not write (a summary may call an object's ``__str__`` or
``_repr_llm_``, as displaying it would) and are declared read-only, so they run without asking.

``--tools run_python`` is apart: the one tool that runs code the model wrote, in the user's
namespace. It exists only when the user names it, and it asks before every run, even under
``--approve auto`` (under ``never`` it is denied).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
from collections.abc import Mapping
from typing import Any

from nbllm._cells.notebook_cells import explain_prompt, get_cell_log, is_user_variable
from nbllm._cells.summaries import ContextLevel, describe
from nbllm._cells.tools import Tool, tool

NOTEBOOK_TOOLS = "notebook"
"""The name in ``--tools`` that stands for these tools."""
MAX_LISTED = 200
MAX_CELLS = 20


def _size(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return "shape " + " \N{MULTIPLICATION SIGN} ".join(f"{n:,}" for n in shape)
    try:
        return f"length {len(value):,}"
    except TypeError:
        return ""


def notebook_tools(namespace: Mapping[str, Any], level: ContextLevel, context_tokens: int) -> dict[str, Tool]:
    """The four tools, bound to `namespace` and the cell's context level."""

    @tool(read_only=True)
    def list_variables() -> str:
        """List the user's variables in the notebook: each one's name, type and size (no values)."""
        lines = []
        for name, value in list(namespace.items()):
            if is_user_variable(name, value):
                size = _size(value)
                lines.append(f"- {name}: {type(value).__name__}" + (f", {size}" if size else ""))
        if not lines:
            return "The notebook defines no variables yet."
        more = len(lines) - MAX_LISTED
        return "\n".join(lines[:MAX_LISTED]) + (f"\n[and {more:,} more]" if more > 0 else "")

    @tool(read_only=True)
    def describe_variable(name: str) -> str:
        """Describe one variable of the notebook: its type, shape, columns and a sample.

        Args:
            name: The variable's name, as list_variables gives it.
        """
        if name not in namespace or not is_user_variable(name, namespace[name]):
            return f"error: the notebook has no variable {name!r}; list_variables gives their names"
        return describe(namespace[name], name, level, context_tokens).text

    @tool(read_only=True)
    def recent_cells(count: int = 3) -> str:
        """The last cells the user ran: their code, and their outputs or errors.

        Args:
            count: How many cells, the most recent last (at most 20).
        """
        text = get_cell_log().context(max(1, min(count, MAX_CELLS)), 2 * context_tokens)
        return text or "The user has run no cells yet."

    @tool(read_only=True)
    def last_error() -> str:
        """The last error a cell raised: the cell's code, the error, the traceback and the local
        variables of the failing function."""
        log = get_cell_log()
        if log.last_exception is None:
            return "No cell has raised an error yet."
        failed = log.last_failed.code if log.last_failed is not None else None
        return explain_prompt(log.last_exception, failed, "The last error in the notebook:", level=level)

    functions = (list_variables, describe_variable, recent_cells, last_error)
    return {f.__name__: Tool.from_callable(f) for f in functions}


RUN_PYTHON_OUTPUT_CHARS = 20_000


def run_python_tool(namespace: Mapping[str, Any]) -> Tool:
    """``run_python``: runs code the model wrote in the user's namespace, and returns what it
    printed and the value of its last expression. It exists only when the user names it in
    ``--tools``, and it always asks, even under ``--approve auto`` (never: denied)."""

    def run_python(code: str) -> str:
        """Run Python code in the user's notebook kernel (with the user's variables) and return
        what it printed and the value of its last expression. The user approves each run."""
        tree = ast.parse(code, "<run_python>")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        assert last is None or isinstance(last, ast.Expr)
        printed = io.StringIO()
        target = namespace if isinstance(namespace, dict) else dict(namespace)
        with contextlib.redirect_stdout(printed):
            exec(compile(tree, "<run_python>", "exec"), target)  # the user approved this code
            value = (
                eval(compile(ast.Expression(last.value), "<run_python>", "eval"), target) if last else None
            )
        shown = printed.getvalue() + ("" if value is None else repr(value))
        if len(shown) > RUN_PYTHON_OUTPUT_CHARS:
            shown = shown[:RUN_PYTHON_OUTPUT_CHARS] + f"\n[cut: {len(shown)} characters]"
        return shown or "(no output)"

    described = Tool.from_callable(run_python)
    return dataclasses.replace(described, always_ask=True)
