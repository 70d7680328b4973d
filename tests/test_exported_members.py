from __future__ import annotations

import builtins
import dataclasses
import importlib
import inspect
import pkgutil
import re
import types

import nbllm
import nbllm._exceptions
import nbllm.testing


def test_all_is_sorted_and_complete() -> None:
    assert nbllm.__all__ == sorted(nbllm.__all__)
    for name in nbllm.__all__:
        assert hasattr(nbllm, name), name
    public = {
        name
        for name in dir(nbllm)
        if not name.startswith("_") and not isinstance(getattr(nbllm, name), types.ModuleType)
    }
    assert public - {"annotations", "Any", "ATTRIBUTE_ONLY"} <= set(nbllm.__all__) | nbllm.ATTRIBUTE_ONLY


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
    # nbllm.map is named by the design; a star import still leaves the builtin alone.
    namespace: dict[str, object] = {}
    exec("from nbllm import *", namespace)
    assert "map" not in namespace and callable(nbllm.map)


def _public_members(cls: type) -> list[tuple[str, object]]:
    """The methods and properties a class defines itself (not pydantic's or a dataclass's)."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            found.append((name, value.fget))
        elif isinstance(value, (staticmethod, classmethod)):
            found.append((name, value.__func__))
        elif inspect.isfunction(value):
            found.append((name, value))
    return found


def _has_own_doc(obj: object) -> bool:
    if inspect.isclass(obj):
        # A dataclass without a docstring gets its signature as __doc__; that does not count.
        doc = vars(obj).get("__doc__")
        return bool(doc) and not doc.startswith(obj.__name__ + "(")
    return bool(inspect.getdoc(obj))


def _documented_surface() -> list[tuple[str, object]]:
    surface: list[tuple[str, object]] = []
    testing_names = [
        n
        for n, v in vars(nbllm.testing).items()
        if not n.startswith("_") and str(getattr(v, "__module__", "")).startswith("nbllm.testing")
    ]
    for module, names in ((nbllm, nbllm.__all__), (nbllm.testing, testing_names)):
        for name in names:
            if name == "__version__":
                continue
            obj = getattr(module, name)
            surface.append((f"{module.__name__}.{name}", obj))
            if inspect.isclass(obj) and obj.__module__.startswith("nbllm"):
                surface += [(f"{module.__name__}.{name}.{m}", v) for m, v in _public_members(obj)]
    return surface


def test_every_public_name_has_a_docstring() -> None:
    surface = _documented_surface()
    assert len(surface) > 100  # the walk really covers the API
    assert [name for name, obj in surface if not _has_own_doc(obj)] == []


def test_the_docstring_check_can_fail() -> None:
    @dataclasses.dataclass
    class Bare:
        x: int

        def method(self) -> None:
            pass

    assert not _has_own_doc(Bare) and not _has_own_doc(Bare.method)


def test_every_module_says_what_it_owns() -> None:
    for info in pkgutil.walk_packages(nbllm.__path__, "nbllm."):
        module = importlib.import_module(info.name)
        assert module.__doc__ and len(module.__doc__.strip()) > 20, info.name
