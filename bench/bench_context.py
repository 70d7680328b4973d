"""Summarising a notebook value as context: time and size, beside pandas' own views of it.

A ``{df}`` placeholder sends a summary (`nbllm._cells.summaries.describe`): shape, columns
with dtypes, null counts and statistics from a bounded random sample, first and random rows.
This times it on a 10,000,000 x 20 frame (pandas, then the same frame in polars) beside what a
user would otherwise reach for in the same run: ``df.describe()`` (statistics over every row)
and ``str(df)`` (pandas' truncated repr), and counts the summary's tokens.

| measure | target |
| summary of a 10M x 20 pandas frame | <= 200 ms |
| summary of the same frame in polars | <= 200 ms |
| the summary's tokens (default budget 1,500) | <= 1,500 |

    python bench/bench_context.py [--rows 10000000] [--repeat 3] [--out PATH] [--check]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, write_results
from nbllm._cells.summaries import DEFAULT_CONTEXT_TOKENS, describe

TARGET_S = 0.200


def make_frame(rows: int) -> pd.DataFrame:
    """20 columns as a real table has them: numbers, categories, text, dates, flags, nulls."""
    rng = np.random.default_rng(42)
    data: dict[str, Any] = {f"measure_{i}": rng.normal(100, 15, rows) for i in range(12)}
    data["count"] = rng.integers(0, 1_000, rows)
    data["region"] = pd.Categorical(rng.choice(["north", "south", "east", "west"], rows))
    data["product"] = rng.choice(np.array([f"SKU-{i:04d}" for i in range(500)], dtype=object), rows)
    data["status"] = rng.choice(np.array(["ok", "late", "lost"], dtype=object), rows)
    data["when"] = pd.date_range("2024-01-01", periods=rows, freq="s")
    data["flag"] = rng.random(rows) > 0.9
    with_gaps = rng.normal(size=rows)
    with_gaps[rng.random(rows) < 0.05] = np.nan
    data["sparse"] = with_gaps
    data["score"] = rng.random(rows)
    return pd.DataFrame(data)


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def main() -> None:
    parser = bench_parser(__doc__, "context.json")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    frame = make_frame(args.rows)
    polars_frame = pl.from_pandas(frame.astype({"region": str}))
    print(f"a {args.rows:,} x {frame.shape[1]} frame ({frame.memory_usage(deep=False).sum() / 1e6:,.0f} MB)")
    rows = [
        ("nbllm summary, pandas", lambda: describe(frame, "df", "sample", DEFAULT_CONTEXT_TOKENS)),
        ("nbllm summary, polars", lambda: describe(polars_frame, "df", "sample", DEFAULT_CONTEXT_TOKENS)),
        ("nbllm schema, pandas", lambda: describe(frame, "df", "schema", DEFAULT_CONTEXT_TOKENS)),
        ("pandas df.describe()", frame.describe),
        ("pandas str(df)", lambda: str(frame)),
        ("polars df.describe()", polars_frame.describe),
    ]
    figures: dict[str, Any] = {"rows": args.rows, "columns": frame.shape[1]}
    print(f"{'what':28} {'median s':>9} {'tokens':>7}")
    for label, run in rows:
        seconds, value = timed(run, args.repeat)
        tokens = getattr(value, "tokens", None)
        if tokens is None:
            tokens = round(len(str(value)) / 4)
        figures[label] = {"seconds": round(seconds, 4), "tokens": tokens}
        print(f"{label:28} {seconds:9.3f} {tokens:7,}")
    targets = {"summary_s": TARGET_S, "summary_tokens": DEFAULT_CONTEXT_TOKENS}
    met = {
        "pandas_summary_s": figures["nbllm summary, pandas"]["seconds"] <= TARGET_S,
        "polars_summary_s": figures["nbllm summary, polars"]["seconds"] <= TARGET_S,
        "summary_tokens": figures["nbllm summary, pandas"]["tokens"] <= DEFAULT_CONTEXT_TOKENS,
    }
    print("targets met:", met)
    write_results(args.out, targets, met, figures, args.check)


if __name__ == "__main__":
    main()
