from __future__ import annotations

import builtins
import re
import types

import nbllm
import nbllm._exceptions


def test_all_is_sorted_and_complete() -> None:
    assert nbllm.__all__ == sorted(nbllm.__all__)
    for name in nbllm.__all__:
        assert hasattr(nbllm, name), name
    public = {
        name
        for name in dir(nbllm)
        if not name.startswith("_") and not isinstance(getattr(nbllm, name), types.ModuleType)
    }
    assert public - {"annotations", "Any"} <= set(nbllm.__all__)


def test_every_error_is_an_nbllm_error() -> None:
    errors = [getattr(nbllm, n) for n in nbllm.__all__ if n.endswith("Error")]
    assert len(errors) >= 20
    for error in errors:
        assert issubclass(error, nbllm.NbllmError), error


def drawn_tree() -> dict[str, str | None]:
    """Each class name in `_exceptions`' docstring drawing, with the class drawn as its parent."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (depth, name) of the open branches
    for line in (nbllm._exceptions.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+Error)\b", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return parents


def test_the_drawn_error_tree_is_the_real_one() -> None:
    classes = {
        name: cls
        for name, cls in vars(nbllm._exceptions).items()
        if isinstance(cls, type) and issubclass(cls, nbllm.NbllmError)
    }
    drawn = drawn_tree()
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        nbllm_bases = [b.__name__ for b in classes[name].__bases__ if issubclass(b, nbllm.NbllmError)]
        assert nbllm_bases == ([parent] if parent else []), name
    assert set(classes) <= set(nbllm.__all__)


def test_drawn_tree_parser_sees_nesting() -> None:
    """The parser reads depth from the drawing, so a misplaced line would be caught."""
    drawn = drawn_tree()
    assert drawn["NbllmError"] is None
    assert drawn["ContextTooLongError"] == "BadRequestError"
    assert drawn["IncompleteStreamError"] == "StreamError"
    assert drawn["APITimeoutError"] == "TransportError"


def test_no_public_name_shadows_a_builtin() -> None:
    assert set(nbllm.__all__) & set(dir(builtins)) == set()
