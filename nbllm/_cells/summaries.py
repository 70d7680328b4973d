"""A value from the notebook as context for a model: a compact, labelled summary instead of
its ``str()``.

`describe` turns what a ``{placeholder}`` names into text at one of three levels the user
chooses (``--context``):

- ``schema``: names, types and shapes, no values at all;
- ``sample`` (the default): a frame's shape, columns with dtypes, null counts and summary
  statistics, its first rows and a few random ones as a Markdown table; an array's shape and
  statistics; a long string's start and end; a big container's size and first items;
- ``full``: ``str()`` of the value, as before, still bounded by the placeholder size guard.

An object's own ``_repr_llm_()`` (chatlab's convention) wins over all of these.

Frames are summarised from a bounded random sample (`SAMPLE_ROWS` rows), so the cost does not
grow with the frame: a 10,000,000 by 20 frame takes about as long as a 100,000-row one. The
summary fits a token budget (``--context-tokens``): rows, then columns, are dropped to fit,
and what was left out is said. pandas, polars and numpy are recognised by their types' modules,
never imported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nbllm._calls.tokens import estimate_tokens
from nbllm._constants import CHARS_PER_TOKEN, CONTEXT_LEVELS, DEFAULT_CONTEXT_TOKENS

ContextLevel = Literal["schema", "sample", "full"]
__all__ = ["CONTEXT_LEVELS", "DEFAULT_CONTEXT_TOKENS", "ContextLevel", "ContextPart", "describe"]
SAMPLE_ROWS = 100_000
"""Rows a frame's statistics are computed from when it has more (drawn at random, seeded)."""
HEAD_ROWS = 5
RANDOM_ROWS = 5
CELL_CHARS = 40
"""A table cell's longest text; longer values end in an ellipsis."""
ITEMS_SHOWN = 10
SEED = 0
"""Samples are drawn with a fixed seed: the same frame gives the same summary (and the cache
and cassettes a stable request)."""


@dataclass(frozen=True)
class ContextPart:
    """One value as the model receives it: what it is, the text, and about how many tokens."""

    name: str
    kind: str
    text: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


def describe(value: Any, name: str, level: ContextLevel, budget_tokens: int) -> ContextPart:
    """`value` (named `name` in the prompt) as context at `level`, in about `budget_tokens`."""
    budget = max(200, int(budget_tokens * CHARS_PER_TOKEN))
    own = getattr(value, "_repr_llm_", None)
    if callable(own) and not isinstance(value, type) and level != "schema":
        return ContextPart(name, "_repr_llm_", str(own()))
    kind = _kind(value)
    if level == "full" or (kind == "scalar" and level == "sample"):
        return ContextPart(name, kind, str(value))
    describer = _DESCRIBERS.get(kind)
    if describer is None:
        return ContextPart(name, kind, _plain(value, name, level, budget))
    return ContextPart(name, kind, describer(value, name, level, budget))


def _kind(value: Any) -> str:
    module = type(value).__module__.split(".")[0]
    cls = type(value).__name__
    if module == "pandas" and cls in ("DataFrame", "Series"):
        return f"pandas {cls}"
    if module == "polars" and cls in ("DataFrame", "Series", "LazyFrame"):
        return f"polars {cls}"
    if module == "numpy" and cls == "ndarray":
        return "numpy array"
    if isinstance(value, (bool, int, float, complex)) or value is None:
        return "scalar"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return type(value).__name__
    return "object"


# -- tables -----------------------------------------------------------------------------------


def _cell(value: Any, limit: int = CELL_CHARS) -> str:
    if isinstance(value, float):
        value = f"{value:.6g}"  # a row's floats to six significant digits, not seventeen
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def markdown_table(
    headings: Sequence[str], rows: Sequence[Sequence[Any]], *, last_chars: int = CELL_CHARS
) -> str:
    """A Markdown table; the last column may be wider (a summary's words)."""

    def line(cells: Sequence[Any]) -> str:
        texts = [_cell(v) for v in cells[:-1]] + [_cell(cells[-1], last_chars)] if cells else []
        return "| " + " | ".join(texts) + " |"

    return "\n".join([line(headings), "|" + "---|" * len(headings), *(line(row) for row in rows)])


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "NaN"
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:.4g}"


def _fit(sections: list[str], budget: int, shrink: list[Callable[[], list[str] | None]]) -> str:
    """Join `sections`; while over `budget` characters, try the next way to shrink them."""
    text = "\n\n".join(sections)
    for step in shrink:
        if len(text) <= budget:
            break
        smaller = step()
        if smaller is not None:
            text = "\n\n".join(smaller)
    if len(text) > budget:  # still over: cut, and say so
        text = text[:budget].rsplit("\n", 1)[0] + "\n[\N{HORIZONTAL ELLIPSIS} cut to the context budget]"
    return text


# -- pandas -----------------------------------------------------------------------------------


def _pandas_frame(frame: Any, name: str, level: ContextLevel, budget: int) -> str:
    import numpy as np

    series = type(frame).__name__ == "Series"
    if series:
        frame = frame.to_frame(name=frame.name if frame.name is not None else name)
    rows, columns = frame.shape
    title = f"pandas DataFrame `{name}`: {rows:,} rows \N{MULTIPLICATION SIGN} {columns:,} columns"
    if series:
        title = f"pandas Series `{name}`: {rows:,} values"
    names = [str(c) for c in frame.columns]
    dtypes = [str(t) for t in frame.dtypes]
    if level == "schema":
        table = markdown_table(("column", "dtype"), list(zip(names, dtypes, strict=True)))
        return _fit([title + " (schema only: no values)", table], budget, [])
    rng = np.random.default_rng(SEED)
    if rows > SAMPLE_ROWS:
        picked = np.unique(rng.integers(0, rows, SAMPLE_ROWS))
        sample = frame.iloc[picked]
        basis = f"Statistics from a random sample of {len(sample):,} rows."
    else:
        sample = frame
        basis = "Statistics from all rows."
    stats = []
    for position, column in enumerate(names):
        series = sample.iloc[:, position]
        nulls = int(series.isna().sum())
        stats.append((column, dtypes[position], _percent(nulls, len(series)), _pandas_summary(series)))
    head = frame.head(HEAD_ROWS)
    random_rows = []
    if rows > HEAD_ROWS:
        chosen = sorted(
            rng.choice(np.arange(HEAD_ROWS, rows), min(RANDOM_ROWS, rows - HEAD_ROWS), replace=False)
        )
        random_rows = [(int(i), *frame.iloc[int(i)].tolist()) for i in chosen]
    head_rows = [(int(i), *head.iloc[i].tolist()) for i in range(len(head))]
    return _frame_text(title, basis, names, stats, head_rows, random_rows, budget)


def _percent(nulls: int, total: int) -> str:
    if not nulls:
        return "0"
    return f"{nulls:,} ({100 * nulls / max(total, 1):.1f}%)"


def _pandas_summary(series: Any) -> str:
    """min / mean / max for numbers, first / last for dates, the top values otherwise."""
    kind = getattr(series.dtype, "kind", "O")
    values = series.dropna()
    if not len(values):
        return "all null"
    if kind in "iuf":
        return f"min {_number(values.min())}, mean {_number(values.mean())}, max {_number(values.max())}"
    if kind == "b":
        return f"{int(values.sum()):,} true of {len(values):,}"
    if kind in "mM":
        return f"from {values.min()} to {values.max()}"
    unique = values.nunique()
    if unique == len(values):  # an id column: counts of 1 say nothing
        return f"all {unique:,} different, e.g. {', '.join(_cell(v) for v in values.head(2))}"
    counts = values.value_counts().head(3)
    top = ", ".join(f"{_cell(v)} ({c:,})" for v, c in counts.items())
    return f"{unique:,} distinct; top {top}"


# -- polars -----------------------------------------------------------------------------------


def _polars_frame(frame: Any, name: str, level: ContextLevel, budget: int) -> str:
    kind = type(frame).__name__
    if kind == "LazyFrame":
        schema = frame.collect_schema()
        table = markdown_table(("column", "dtype"), [(n, str(t)) for n, t in schema.items()])
        return f"polars LazyFrame `{name}` (not collected: schema only)\n\n{table}"
    if kind == "Series":
        frame = frame.to_frame(frame.name or name)
    rows, columns = frame.shape
    title = f"polars DataFrame `{name}`: {rows:,} rows \N{MULTIPLICATION SIGN} {columns:,} columns"
    if kind == "Series":
        title = f"polars Series `{name}`: {rows:,} values"
    names, dtypes = frame.columns, [str(t) for t in frame.dtypes]
    if level == "schema":
        table = markdown_table(("column", "dtype"), list(zip(names, dtypes, strict=True)))
        return _fit([title + " (schema only: no values)", table], budget, [])
    if rows > SAMPLE_ROWS:
        sample = frame.sample(n=SAMPLE_ROWS, seed=SEED)
        basis = f"Statistics from a random sample of {SAMPLE_ROWS:,} rows."
    else:
        sample = frame
        basis = "Statistics from all rows."
    stats = []
    for column, dtype in zip(names, dtypes, strict=True):
        series = sample.get_column(column)
        stats.append((column, dtype, _percent(series.null_count(), len(series)), _polars_summary(series)))
    head_rows = [(i, *row) for i, row in enumerate(frame.head(HEAD_ROWS).iter_rows())]
    random_rows = []
    if rows > HEAD_ROWS:
        import numpy as np

        rng = np.random.default_rng(SEED)
        chosen = sorted(
            rng.choice(np.arange(HEAD_ROWS, rows), min(RANDOM_ROWS, rows - HEAD_ROWS), replace=False)
        )
        random_rows = [(int(i), *frame.row(int(i))) for i in chosen]
    return _frame_text(title, basis, names, stats, head_rows, random_rows, budget)


def _polars_summary(series: Any) -> str:
    values = series.drop_nulls()
    if not len(values):
        return "all null"
    if values.dtype.is_numeric():
        return f"min {_number(values.min())}, mean {_number(values.mean())}, max {_number(values.max())}"
    if values.dtype.is_temporal():
        return f"from {values.min()} to {values.max()}"
    unique = values.n_unique()
    if unique == len(values):  # an id column: counts of 1 say nothing
        return f"all {unique:,} different, e.g. {', '.join(_cell(v) for v in values.head(2))}"
    counts = values.value_counts(sort=True).head(3).rows()
    top = ", ".join(f"{_cell(v)} ({c:,})" for v, c in counts)
    return f"{unique:,} distinct; top {top}"


# -- a frame's text, fitted -------------------------------------------------------------------


def _frame_text(
    title: str,
    basis: str,
    names: list[str],
    stats: list[tuple[str, str, str, str]],
    head_rows: list[tuple[Any, ...]],
    random_rows: list[tuple[Any, ...]],
    # each row: its position in the frame, then its values
    budget: int,
) -> str:
    shown = {"columns": len(names), "head": len(head_rows), "random": len(random_rows)}

    def sections() -> list[str]:
        cut = names[: shown["columns"]]
        more = len(names) - len(cut)
        columns = markdown_table(("column", "dtype", "nulls", "summary"), stats[: len(cut)], last_chars=90)
        if more:
            rest = ", ".join(names[len(cut) :][:40])
            columns += f"\n\n[\N{HORIZONTAL ELLIPSIS} and {more:,} more columns: {rest}]"
        parts = [f"{title}. {basis}", columns]
        headings = ("#", *cut)
        if shown["head"]:
            rows = [row[: 1 + len(cut)] for row in head_rows[: shown["head"]]]
            parts.append("First rows:\n\n" + markdown_table(headings, rows))
        if shown["random"]:
            rows = [row[: 1 + len(cut)] for row in random_rows[: shown["random"]]]
            parts.append("Random rows:\n\n" + markdown_table(headings, rows))
        return parts

    def fewer(key: str, to: int) -> Callable[[], list[str]]:
        def step() -> list[str]:
            shown[key] = min(shown[key], to)
            return sections()

        return step

    def fewer_columns() -> list[str] | None:
        while shown["columns"] > 3:
            shown["columns"] = max(3, shown["columns"] * 2 // 3)
            text = sections()
            if len("\n\n".join(text)) <= budget:
                return text
        return sections()

    steps = [fewer("random", 2), fewer("head", 3), fewer("random", 0), fewer_columns, fewer("head", 1)]
    return _fit(sections(), budget, steps)


# -- numpy, text and containers ---------------------------------------------------------------


def _numpy_array(array: Any, name: str, level: ContextLevel, budget: int) -> str:
    title = f"numpy array `{name}`: shape {tuple(array.shape)}, dtype {array.dtype}"
    if level == "schema":
        return title + " (schema only: no values)"
    flat = array.reshape(-1)
    if flat.size > SAMPLE_ROWS:
        import numpy as np

        flat = flat[np.random.default_rng(SEED).integers(0, flat.size, SAMPLE_ROWS)]
        title += f"; statistics from a random sample of {SAMPLE_ROWS:,} values"
    parts = [title]
    if array.dtype.kind in "iufb" and flat.size:
        parts.append(f"min {_number(flat.min())}, mean {_number(flat.mean())}, max {_number(flat.max())}")
    import numpy as np

    with np.printoptions(threshold=50, edgeitems=3, linewidth=100):
        parts.append("Values (ends shown):\n" + str(array))
    return _fit(parts, budget, [])


def _text(text: str, name: str, level: ContextLevel, budget: int) -> str:
    if level == "schema":
        return f"(text `{name}`: {len(text):,} characters, {text.count(chr(10)) + 1:,} lines; no values)"
    if len(text) <= budget:
        return text
    keep = budget // 2 - 60
    left = len(text) - 2 * keep
    gap = f"[\N{HORIZONTAL ELLIPSIS} {left:,} characters of `{name}` left out; --context full sends them]"
    return f"{text[:keep]}\n{gap}\n{text[-keep:]}"


def _container(value: Any, name: str, level: ContextLevel, budget: int) -> str:
    kind = type(value).__name__
    if level == "schema":
        keys = f"; keys {', '.join(map(str, list(value)[:ITEMS_SHOWN]))}" if isinstance(value, dict) else ""
        return f"({kind} `{name}` of {len(value):,} items{keys}; no values)"
    if not isinstance(value, dict) and value and all(callable(getattr(v, "_repr_llm_", None)) for v in value):
        lines = [f"- {item._repr_llm_()}" for item in value]  # e.g. nbllm.history(): newest last
        shown = "\n".join(lines)
        while len(shown) > budget and len(lines) > 1:
            lines = lines[len(lines) // 2 :]
            shown = f"[\N{HORIZONTAL ELLIPSIS} the first {len(value) - len(lines):,} left out]\n" + "\n".join(
                lines
            )
        return f"{kind} `{name}` of {len(value):,} items:\n{shown}"
    text = str(value)
    if len(text) <= budget:
        return text
    items = list(value.items())[:ITEMS_SHOWN] if isinstance(value, dict) else list(value)[:ITEMS_SHOWN]
    shown = "\n".join(
        f"- {_cell(item) if not isinstance(item, tuple) else f'{_cell(item[0])}: {_cell(item[1])}'}"
        for item in items
    )
    return _fit(
        [f"{kind} `{name}` of {len(value):,} items; the first {len(items)}:", shown],
        budget,
        [],
    )


def _plain(value: Any, name: str, level: ContextLevel, budget: int) -> str:
    if level == "schema":
        return f"({type(value).__name__} `{name}`; no values)"
    return str(value)


_DESCRIBERS: dict[str, Callable[[Any, str, ContextLevel, int], str]] = {
    "pandas DataFrame": _pandas_frame,
    "pandas Series": _pandas_frame,
    "polars DataFrame": _polars_frame,
    "polars Series": _polars_frame,
    "polars LazyFrame": _polars_frame,
    "numpy array": _numpy_array,
    "text": _text,
    "dict": _container,
    "list": _container,
    "tuple": _container,
    "set": _container,
    "frozenset": _container,
    "scalar": lambda value, name, level, budget: f"({type(value).__name__} `{name}`; no value)",
}
