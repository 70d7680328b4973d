"""The conversation log's cost to the kernel, and search over a large log.

1. What a logged call costs the thread that made it: `History.add` of a record carrying the
   transcript of a 20-message conversation, with the log off and on (on: the record is put on
   the writer's queue; masking and SQLite happen on the writer thread).
2. Whole calls: `nbllm.chat` to the loopback server with the log off and on, beside raw httpx
   posting the same request, interleaved.
3. The writer thread's throughput (rows per second, masking included).
4. Search over 100,000 logged calls: FTS5 (`nbllm.logs(search=...)`) beside a plain ``LIKE``
   scan of the same rows, for a rare and a common word.

| measure | target |
| kernel time per logged call (History.add, log on) | <= 1 ms |
| search over 100,000 calls | <= 200 ms |

    python bench/bench_log.py [--rows 100000] [--calls 200] [--out PATH] [--check]
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbllm
from bench.common import bench_parser, loopback, register, write_results
from nbllm._calls.history import CallRecord, Transcript, get_history
from nbllm._log import database
from nbllm._log.writer import get_log

ADD_TARGET_S = 0.001
SEARCH_TARGET_S = 0.200
WORDS = (
    "revenue",
    "forecast",
    "cohort",
    "churn",
    "pipeline",
    "latency",
    "gradient",
    "tensor",
    "bucket",
    "region",
    "quarter",
    "invoice",
    "customer",
    "segment",
    "anomaly",
    "baseline",
    "regression",
    "median",
    "variance",
    "outlier",
    "sample",
    "schema",
    "column",
)


def conversation(turns: int = 10) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful analyst."}]
    for turn in range(turns):
        messages.append(
            {"role": "user", "content": f"Question {turn}: " + " ".join(random.choices(WORDS, k=40))}
        )
        messages.append({"role": "assistant", "content": " ".join(random.choices(WORDS, k=120))})
    return messages


def record_with_transcript(messages: list[dict[str, Any]]) -> CallRecord:
    record = CallRecord(
        "p/m", "p/m", "127.0.0.1", datetime.now(timezone.utc), latency_s=0.5, prompt_tokens=900
    )
    record.transcript = Transcript(messages, reply=" ".join(random.choices(WORDS, k=150)))
    return record


def time_adds(count: int) -> float:
    """Median seconds of one `History.add` (what the calling thread pays)."""
    history = get_history()
    messages = conversation()
    times = []
    for _ in range(count):
        record = record_with_transcript(messages)
        history.transcript_wanted_by.add("bench")
        started = time.perf_counter()
        history.add(record)
        times.append(time.perf_counter() - started)
    history.transcript_wanted_by.discard("bench")
    return statistics.median(times)


async def whole_calls(base_url: str, calls: int) -> dict[str, float]:
    model = register("loop", base_url)
    body = {"model": "m", "messages": [{"role": "user", "content": "Hello"}], "stream": True}
    raw, off, on = [], [], []
    log = get_log()
    path = Path(tempfile.mkdtemp()) / "calls.db"
    async with httpx.AsyncClient() as client:
        for _ in range(calls):
            started = time.perf_counter()
            async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
                async for _line in response.aiter_lines():
                    pass
            raw.append(time.perf_counter() - started)
            started = time.perf_counter()
            await nbllm.achat("Hello", model=model, stream=True)
            off.append(time.perf_counter() - started)
            log.turn_on(path)
            started = time.perf_counter()
            await nbllm.achat("Hello", model=model, stream=True)
            on.append(time.perf_counter() - started)
            log.turn_off()
    return {
        "raw_httpx_call_s": statistics.median(raw),
        "nbllm_call_log_off_s": statistics.median(off),
        "nbllm_call_log_on_s": statistics.median(on),
    }


def writer_throughput(count: int) -> float:
    """Rows per second the writer thread masks and writes."""
    log = get_log()
    log.turn_on(Path(tempfile.mkdtemp()) / "throughput.db")
    messages = conversation()
    started = time.perf_counter()
    history = get_history()
    for _ in range(count):
        history.add(record_with_transcript(messages))
    log.flush(300)
    seconds = time.perf_counter() - started
    log.turn_off()
    return count / seconds


def fill(path: Path, rows: int) -> None:
    connection = database.connect(path)
    start = datetime.now(timezone.utc) - timedelta(days=90)
    batch = []
    for n in range(rows):
        prompt = " ".join(random.choices(WORDS, k=30)) + (" zanzibar" if n % 10_000 == 0 else "")
        columns = {
            "time": (start + timedelta(seconds=n * 60)).isoformat(),
            "kind": "chat",
            "provider": "p",
            "model": f"p/m{n % 5}",
            "requested": "p/m",
            "status": "ok" if n % 50 else "error",
            "prompt_tokens": 900,
            "completion_tokens": 200,
            "reply": " ".join(random.choices(WORDS, k=80)),
        }
        batch.append(database.LoggedCall(columns, [{"role": "user", "content": prompt}], prompt))
        if len(batch) == 2_000:
            database.write(connection, batch)
            batch = []
    if batch:
        database.write(connection, batch)
    connection.close()


def time_search(path: Path, word: str, repeat: int = 5) -> tuple[float, float, int]:
    """(FTS seconds, LIKE-scan seconds, matches) for `word`, medians."""
    connection = database.connect(path)
    fts, like, found = [], [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        found = len(database.query(connection, search=word, limit=100))
        fts.append(time.perf_counter() - started)
        started = time.perf_counter()
        connection.execute(
            "SELECT id FROM calls WHERE reply LIKE ? ORDER BY time DESC LIMIT 100", (f"%{word}%",)
        ).fetchall()
        like.append(time.perf_counter() - started)
    connection.close()
    return statistics.median(fts), statistics.median(like), found


def main() -> None:
    parser = bench_parser(__doc__, "log.json")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    random.seed(7)
    figures: dict[str, Any] = {}

    figures["history_add_log_off_s"] = time_adds(2_000)
    log = get_log()
    log.turn_on(Path(tempfile.mkdtemp()) / "adds.db")
    figures["history_add_log_on_s"] = time_adds(2_000)
    log.flush(300)
    log.turn_off()
    print(
        f"kernel time per call: History.add {figures['history_add_log_off_s'] * 1e6:.1f} us with the log "
        f"off, {figures['history_add_log_on_s'] * 1e6:.1f} us on"
    )
    figures["writer_rows_per_s"] = writer_throughput(2_000)
    print(f"writer thread: {figures['writer_rows_per_s']:,.0f} rows/s (20-message conversations, masked)")

    with loopback() as base_url:
        figures |= asyncio.run(whole_calls(base_url, args.calls))
    print(
        f"a whole streamed call: raw httpx {figures['raw_httpx_call_s'] * 1e3:.2f} ms, nbllm "
        f"{figures['nbllm_call_log_off_s'] * 1e3:.2f} ms (log off), "
        f"{figures['nbllm_call_log_on_s'] * 1e3:.2f} ms (log on)"
    )

    path = Path(tempfile.mkdtemp()) / "big.db"
    started = time.perf_counter()
    fill(path, args.rows)
    figures["fill_s"] = time.perf_counter() - started
    figures["rows"] = args.rows
    figures["file_mb"] = sum(p.stat().st_size for p in path.parent.glob("big.db*")) / 1e6
    for label, word in (("rare", "zanzibar"), ("common", "revenue")):
        fts, like, found = time_search(path, word)
        figures[f"search_{label}_s"], figures[f"like_{label}_s"] = fts, like
        print(
            f"search {args.rows:,} calls for a {label} word: FTS {fts * 1e3:.1f} ms ({found} shown), "
            f"LIKE scan {like * 1e3:.1f} ms"
        )
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    database.stats(connection)
    figures["stats_s"] = time.perf_counter() - started
    connection.close()
    print(f"stats per day and model over {args.rows:,} calls: {figures['stats_s'] * 1e3:.0f} ms")

    targets = {"history_add_s": ADD_TARGET_S, "search_s": SEARCH_TARGET_S}
    met = {
        "history_add_s": figures["history_add_log_on_s"] <= ADD_TARGET_S,
        "search_s": max(figures["search_rare_s"], figures["search_common_s"]) <= SEARCH_TARGET_S,
    }
    print("targets met:", met)
    write_results(
        args.out,
        targets,
        met,
        {k: round(v, 6) if isinstance(v, float) else v for k, v in figures.items()},
        args.check,
    )


if __name__ == "__main__":
    main()
