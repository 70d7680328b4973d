"""Values as context (issue 30): what a placeholder of a frame, an array, a text or a container
sends at each level, within its budget, and that summarising a big frame does not read it all."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import polars as pl
import pytest

from nbllm._cells.interpolate import interpolate
from nbllm._cells.summaries import describe

SECRET_CITY = "Zanzibar-7781"


def frame(rows: int, columns: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    data: dict[str, object] = {"city": rng.choice(["Paris", "Lyon", SECRET_CITY], rows)}
    for i in range(columns - 1):
        data[f"x{i}"] = rng.normal(size=rows)
    return pd.DataFrame(data)


@pytest.mark.parametrize("make", [lambda f: f, pl.from_pandas], ids=["pandas", "polars"])
def test_a_frame_is_summarised_with_columns_dtypes_stats_and_rows(make: object) -> None:
    value = make(frame(1_000))  # type: ignore[operator]
    text = describe(value, "df", "sample", 1_500).text
    assert "1,000 rows \N{MULTIPLICATION SIGN} 3 columns" in text and "Statistics from all rows." in text
    assert re.search(r"\| x0 \| (float64|Float64) \| 0 \| min -?\d", text)
    assert "3 distinct; top" in text and "First rows:" in text and "Random rows:" in text


@pytest.mark.parametrize("make", [lambda f: f, pl.from_pandas], ids=["pandas", "polars"])
def test_schema_carries_no_value_of_any_cell(make: object) -> None:
    value = make(frame(1_000))  # type: ignore[operator]
    text = describe(value, "df", "schema", 1_500).text
    assert "city" in text and "x0" in text and SECRET_CITY not in text and "Paris" not in text
    assert not re.search(r"\d\.\d", text)  # no statistics either


def test_a_wide_frame_fits_its_budget_and_says_what_it_left_out() -> None:
    text = describe(frame(200, columns=120), "wide", "sample", 800).text
    assert len(text) <= 800 * 4 and "more columns" in text


def test_a_big_frame_is_read_through_a_bounded_sample() -> None:
    big = frame(2_000_000, columns=2)
    text = describe(big, "big", "sample", 1_500).text
    assert "2,000,000 rows" in text and "random sample of" in text


def test_interpolation_sets_a_summary_apart_and_keeps_formatted_values_as_written() -> None:
    df = frame(50)
    filled = interpolate("Look at {df} please, {n:.1f} and {df!s:.5}", {"df": df, "n": 2.25})  # str, cut
    assert "|\n\n please," in filled.text  # the table ends before the prompt's next words
    assert "and 2.2 and" in filled.text.replace("\n", " ") or " 2.2 " in filled.text
    assert [p.kind for p in filled.parts] == ["pandas DataFrame", "formatted", "formatted"]


def test_long_text_keeps_its_ends_and_full_keeps_all() -> None:
    text = "start " + "middle " * 5_000 + "end"
    sampled = describe(text, "doc", "sample", 200).text
    assert sampled.startswith("start") and sampled.endswith("end") and "left out" in sampled
    assert describe(text, "doc", "full", 200).text == text
    assert describe(text, "doc", "schema", 200).text.startswith("(text `doc`: 35,009 characters")


def test_numpy_arrays_and_containers() -> None:
    array = describe(np.arange(1_000_000, dtype=float).reshape(1000, 1000), "a", "sample", 500).text
    assert "shape (1000, 1000), dtype float64" in array and "..." in array
    items = describe(list(range(100_000)), "xs", "sample", 300).text
    assert "list `xs` of 100,000 items; the first 10" in items
    assert describe({"k": 1}, "d", "sample", 300).text == "{'k': 1}"  # small: as it is
    assert (
        describe({"token": "s3cret"}, "d", "schema", 300).text
        == "(dict `d` of 1 items; keys token; no values)"
    )


def test_repr_llm_wins_and_nbllm_objects_have_one() -> None:
    from nbllm._calls.results import ChatResult

    result = ChatResult(text="Paris.", model="p/m")
    assert describe(result, "r", "sample", 500).text == "Reply from p/m (ok):\n\nParis."
