"""The rows of a batch run, whatever they came as (a pandas or polars DataFrame, a list of
dicts, a list of strings), and the same kind of table back with the output columns added.

Neither pandas nor polars is imported unless the data is one of theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbllm._exceptions import PromptError

TEXT_COLUMN = "text"
"""A list of strings becomes rows with this one column (the template says ``{text}``)."""
RESULT_COLUMNS = ("status", "error", "tokens", "latency_s", "cost")
"""Added to every row after its output (the text, or one column per schema field)."""


@dataclass
class Rows:
    """The rows as dicts, and what kind of table to give back."""

    records: list[dict[str, Any]]
    kind: str
    """``pandas``, ``polars``, ``dicts`` or ``strings``."""
    source: Any = None

    @property
    def columns(self) -> list[str]:
        return list(self.records[0]) if self.records else []


def read_rows(data: Any) -> Rows:
    """`data` as rows; a `PromptError` for anything else."""
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and type(data).__name__ == "DataFrame":
        return Rows(data.to_dict(orient="records"), "pandas", data)
    if module == "polars" and type(data).__name__ == "DataFrame":
        return Rows(data.to_dicts(), "polars", data)
    if module == "dask":
        raise PromptError("a Dask DataFrame runs on the cluster; nbllm.map sends it there itself")
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
        raise PromptError(
            f"data should be a pandas or polars DataFrame, a list of dicts or a list of strings, "
            f"not {type(data).__name__}",
            hint="e.g. nbllm.map('Classify: {text}', df, model=...)",
        )
    items = list(data)
    if all(isinstance(item, str) for item in items):
        return Rows([{TEXT_COLUMN: item} for item in items], "strings")
    if all(isinstance(item, Mapping) for item in items):
        return Rows([dict(item) for item in items], "dicts")
    raise PromptError("a list of rows should hold only dicts, or only strings")


def check_columns(rows: Rows, outputs: Sequence[str]) -> None:
    """Refuse output names the data already uses: the run would overwrite the user's column."""
    taken = sorted(set(rows.columns) & set(outputs))
    if taken:
        raise PromptError(
            f"the data already has column(s) {', '.join(map(repr, taken))}, which the run would fill",
            hint="rename them, or pass output='another_name' for the text column",
        )


def with_outputs(rows: Rows, outputs: list[dict[str, Any]]) -> Any:
    """The input rows with each row's output columns added, as the kind of table given."""
    merged = [{**row, **out} for row, out in zip(rows.records, outputs, strict=True)]
    if rows.kind == "pandas":
        import pandas

        frame = pandas.DataFrame(merged, index=rows.source.index)
        return frame.reindex(columns=[*rows.source.columns, *_new_columns(rows, outputs)])
    if rows.kind == "polars":
        import polars

        return polars.DataFrame(merged, infer_schema_length=None)
    return merged


def _new_columns(rows: Rows, outputs: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for out in outputs:
        seen.update(dict.fromkeys(out))
    return [name for name in seen if name not in rows.columns]
