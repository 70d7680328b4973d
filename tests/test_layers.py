"""The package tree is the architecture: each layer imports only from the layers below it,
and the layers under the views never import IPython or ipywidgets.

Every ``import`` and ``from ... import`` is read with `ast`, including those inside
functions (a lazy import is still a dependency) and those under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nbllm"

# Lowest first. A module may import from its own layer and from any layer below it.
LAYERS: dict[str, int] = {
    "_exceptions": 0,
    "_constants": 0,
    "_observers": 0,
    "_session": 0,
    "_safe_markdown": 0,
    "_numbers": 0,
    "_providers": 1,
    "_replay": 2,
    "_calls": 3,
    "_cells": 4,
    "_batch": 5,
    "_log": 5,
    "_views": 6,
    "_panel": 7,
    "magics": 8,
    "_api": 9,
    "marimo": 9,
    "mcp": 9,
    "__init__": 9,
}
# Standalone: they must not import nbllm at all, so a test server or the CLI never drags
# the package (and its import-time work) into a process that does not need it.
STANDALONE = {"testing", "cli"}
UI_FREE = {"_providers", "_calls", "_cells", "_batch", "_log"}
UI_PACKAGES = {"IPython", "ipywidgets", "ipykernel", "traitlets", "anywidget"}


def layer_of(path: Path) -> str:
    """`nbllm/_calls/sse.py` -> `_calls`; `nbllm/_api.py` -> `_api`."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("nbllm", *parts)).removesuffix(".__init__")


def imported_modules(path: Path, source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the source; relative ones resolved."""
    tree = ast.parse(source, str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # `from nbllm import _persist` names a module in the `names`, not in `module`
            if base == "nbllm":
                found += [(node.lineno, f"nbllm.{alias.name}") for alias in node.names]
    return found


def target_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "nbllm" or len(parts) == 1:
        return None
    return parts[1]


def violations(path: Path, source: str | None = None) -> list[str]:
    layer = layer_of(path)
    problems = []
    for line, module in imported_modules(path, path.read_text() if source is None else source):
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        if layer in UI_FREE and module.split(".")[0] in UI_PACKAGES:
            problems.append(f"{where}, a UI package, below the views")
        target = target_layer(module)
        if target is None or target == layer:
            continue
        if layer in STANDALONE:
            problems.append(f"{where}; {layer} stands alone")
        elif target in STANDALONE:
            continue  # using the test server or the CLI is allowed from above (nothing does today)
        elif target not in LAYERS:
            problems.append(f"{where}: {target} is in no layer; add it to LAYERS")
        elif LAYERS[target] > LAYERS[layer]:
            problems.append(f"{where}, a higher layer ({target} above {layer})")
    return problems


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_top_level_entry_has_a_layer() -> None:
    entries = {layer_of(p) for p in package_files()}
    assert entries <= set(LAYERS) | STANDALONE, entries - set(LAYERS) - STANDALONE


def test_layers_import_only_downward() -> None:
    problems = [problem for path in package_files() for problem in violations(path)]
    assert problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from nbllm._views.reply import LiveView\n", "a higher layer (_views above _calls)"),
        ("def f():\n    from nbllm.magics import parsing\n", "a higher layer (magics above _calls)"),
        ("from nbllm import _panel\n", "a higher layer (_panel above _calls)"),
        ("from .. import _api\n", "a higher layer (_api above _calls)"),
        ("import IPython.display\n", "a UI package, below the views"),
        ("from ipywidgets import Button\n", "a UI package, below the views"),
    ],
)
def test_the_check_catches_an_upward_import(source: str, expected: str) -> None:
    """The checker itself can fail: an upward import in a module of a lower layer is reported."""
    problems = violations(PACKAGE / "_calls" / "planted.py", source)
    assert len(problems) == 1 and expected in problems[0], problems


def test_lower_and_same_layer_imports_are_allowed() -> None:
    source = "from nbllm._calls.sse import SSEDecoder\nfrom . import tools\nimport httpx\n"
    assert violations(PACKAGE / "_cells" / "planted.py", source) == []


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


HEAVY = {"httpx", "pydantic", "yaml", "ipywidgets"}


def test_load_ext_defers_the_heavy_dependencies_to_first_use() -> None:
    """`%load_ext nbllm` stays cheap (0.05 s, not 0.35 s): httpx, pydantic, yaml and ipywidgets
    are imported by the first %%chat or %llm_provider, not by loading the extension."""
    shell = (
        "from IPython.core.interactiveshell import InteractiveShell\nshell = InteractiveShell.instance()\n"
    )
    loaded = _modules_after(shell + "shell.run_line_magic('load_ext', 'nbllm')")
    assert "nbllm.magics.chat" in loaded and HEAVY & loaded == set()
    used = _modules_after(
        shell + "shell.run_line_magic('load_ext', 'nbllm')\nshell.run_line_magic('llm_provider', 'list')"
    )
    assert {"httpx", "pydantic"} <= used  # the check above can fail: first use does load them


def test_import_nbllm_loads_no_ui_and_no_http_stack() -> None:
    loaded = _modules_after("import nbllm\nassert nbllm.NbllmError and nbllm.__version__")
    assert (HEAVY | {"IPython"}) & loaded == set()
    assert "httpx" in _modules_after("import nbllm\nnbllm.chat")  # a lazy name still resolves


# Inside `_calls`, the wire protocols are leaves under the core: they build requests and read
# replies, and may use only these modules of the core (the engine above them picks a protocol,
# never the other way round).
WIRE_MAY_USE = {"errors", "reply_state", "request", "results", "sse", "wire"}


def wire_violations(path: Path, source: str | None = None) -> list[str]:
    problems = []
    for line, module in imported_modules(path, path.read_text() if source is None else source):
        parts = module.split(".")
        if parts[:2] == ["nbllm", "_calls"] and len(parts) > 2 and parts[2] not in WIRE_MAY_USE:
            problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}, above the wire")
    return problems


def test_wire_modules_are_leaves_under_the_call_core() -> None:
    wire = sorted((PACKAGE / "_calls" / "wire").glob("*.py"))
    assert wire and [problem for path in wire for problem in wire_violations(path)] == []


def test_the_wire_check_catches_an_import_of_the_engine() -> None:
    planted = PACKAGE / "_calls" / "wire" / "planted.py"
    assert wire_violations(planted, "from nbllm._calls.call import run_call\n") != []
    assert wire_violations(planted, "from nbllm._calls.sse import SSEDecoder\n") == []


def test_no_two_modules_share_a_file_name() -> None:
    """One name, one meaning: `reply.py` in two layers made readers ask which one was meant."""
    names: dict[str, list[str]] = {}
    for path in package_files():
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(PACKAGE)))
    assert {name: where for name, where in names.items() if len(where) > 1} == {}
