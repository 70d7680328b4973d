"""Batch runs: `nbllm.map` over 1,000 rows beside raw httpx, the ideal, rpm at the server, a
resume after an interrupt, and a Dask LocalCluster, in one run.

The loopback server runs in its own process (each reply waits ``--latency`` seconds before its
first byte, like a model's queue and prompt processing) and reports what it received, so the
rates are measured where a provider would measure them. The baseline is what a careful user
would write with httpx: one pooled `AsyncClient`, a semaphore of the same size, one POST per row.

| measure | target |
| wall, 1,000 rows, 200 ms each, concurrency 32 | <= 1.2x the ideal (rows x latency / concurrency) |
| requests per minute at the server, rpm=600 | <= 600 in any sliding minute, >= 570 on average |
| rerun after an interrupt at ~50% | the server sees exactly the rows not done |
| wall, the same 1,000 rows on a LocalCluster of 2 workers | <= 1.3x the in-process run |

    python bench/bench_map.py [--rows 1000] [--no-rpm] [--no-dask] [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import register, write_results

import nbllm
from nbllm._batch.rows import read_rows
from nbllm._batch.run import MapRun, MapSpec
from nbllm._calls.loop_thread import loop_thread

TARGETS = {
    "ideal_wall_ratio": 1.2,
    "rpm_max_in_a_minute": 600,
    "rpm_mean_at_least": 570,
    "dask_wall_ratio": 1.3,
}
LATENCY_S = 0.2
CONCURRENCY = 32


def serve_in_process(connection: Connection, latency_s: float) -> None:
    """The loopback server's process: send the base URL, then the arrivals on each ``report``."""
    from nbllm.testing import LoopbackServer

    server = LoopbackServer(echo=True, latency_s=latency_s).start()
    connection.send(server.base_url)
    while True:
        command = connection.recv()
        if command == "stop":
            server.close()
            return
        arrivals = [(r.at, r.body["messages"][-1]["content"]) for r in server.requests if r.body]
        server.requests.clear()
        connection.send(arrivals)


class Server:
    def __init__(self, latency_s: float) -> None:
        self.connection, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=serve_in_process, args=(child, latency_s), daemon=True)
        self.process.start()
        self.base_url: str = self.connection.recv()

    def arrivals(self) -> list[tuple[float, str]]:
        """What the server received since the last call, and when."""
        self.connection.send("report")
        received: list[tuple[float, str]] = self.connection.recv()
        return received

    def close(self) -> None:
        self.connection.send("stop")
        self.process.join(5)


async def raw_httpx(url: str, prompts: list[str]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(prompt: str) -> str:
            async with gate:
                body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
                response = await client.post(f"{url}/chat/completions", json=body)
                response.raise_for_status()
                return str(response.json()["choices"][0]["message"]["content"])

        await asyncio.gather(*(one(p) for p in prompts))


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def max_in_a_minute(times: list[float]) -> int:
    times = sorted(times)
    return max(bisect.bisect_right(times, t + 60.0) - i for i, t in enumerate(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--no-rpm", action="store_true", help="skip the 100 s rpm measure")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_map.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    rows = [f"row {i}" for i in range(args.rows)]
    figures: dict[str, Any] = {"rows": args.rows, "latency_s": LATENCY_S, "concurrency": CONCURRENCY}
    met: dict[str, bool] = {}
    server = Server(LATENCY_S)
    try:
        model = register("bench", server.base_url)
        ideal = args.rows * LATENCY_S / CONCURRENCY
        raw = timed(lambda: loop_thread().run(raw_httpx(server.base_url, rows)))
        server.arrivals()
        ours = timed(
            lambda: nbllm.map(
                "{text}", rows, model=model, concurrency=CONCURRENCY, checkpoint=False, progress=False
            )
        )
        assert len(server.arrivals()) == args.rows
        figures |= {"ideal_s": ideal, "raw_httpx_wall_s": raw, "nbllm_wall_s": ours}
        figures["ideal_wall_ratio"] = ours / ideal
        figures["raw_httpx_ideal_ratio"] = raw / ideal
        figures["nbllm_vs_raw_httpx"] = ours / raw
        met["ideal_wall_ratio"] = ours / ideal <= TARGETS["ideal_wall_ratio"]

        # Interrupt at about half, then rerun with the same checkpoint.
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = str(Path(directory) / "run.sqlite")
            run = MapRun(
                MapSpec("{text}", model=model, concurrency=CONCURRENCY),
                read_rows(rows),
                checkpoint=checkpoint,
            )

            async def interrupted() -> None:
                task = asyncio.ensure_future(run.run())
                while run.progress.done < args.rows // 2:
                    await asyncio.sleep(0.005)
                task.cancel()  # what an interrupt does to the run

            loop_thread().run(interrupted())
            first = {content for _, content in server.arrivals()}
            done_first = run.progress.done
            nbllm.map(
                "{text}", rows, model=model, concurrency=CONCURRENCY, checkpoint=checkpoint, progress=False
            )
            second = [content for _, content in server.arrivals()]
        answered_first = done_first
        figures["resume"] = {
            "rows_done_before_the_interrupt": answered_first,
            "sent_before_the_interrupt": len(first),
            "sent_on_the_rerun": len(second),
            "rerun_sent_twice": len(second) - len(set(second)),
        }
        met["resume_exact"] = len(second) == args.rows - answered_first and len(set(second)) == len(second)

        if not args.no_rpm:
            started = time.monotonic()
            nbllm.map(
                "{text}",
                rows,
                model=model,
                concurrency=CONCURRENCY,
                rpm=600,
                checkpoint=False,
                progress=False,
            )
            times = [at for at, _ in server.arrivals()]
            span = max(times) - min(times)
            figures["rpm"] = {
                "max_in_any_minute": max_in_a_minute(times),
                "mean_per_minute": (len(times) - 1) / span * 60 if span else None,
                "wall_s": time.monotonic() - started,
            }
            met["rpm_max_in_a_minute"] = figures["rpm"]["max_in_any_minute"] <= TARGETS["rpm_max_in_a_minute"]
            met["rpm_mean_at_least"] = figures["rpm"]["mean_per_minute"] >= TARGETS["rpm_mean_at_least"]

        if not args.no_dask:
            import dask.dataframe as dd
            import distributed
            import pandas

            frame = pandas.DataFrame({"text": rows})
            with (
                distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR
                ) as cluster,
                distributed.Client(cluster),
            ):
                lazy = nbllm.map(
                    "{text}", dd.from_pandas(frame, npartitions=8), model=model, concurrency=CONCURRENCY
                )
                on_dask = timed(lambda: figures.setdefault("dask_rows", len(lazy.compute())))
            in_process = timed(
                lambda: nbllm.map(
                    "{text}", frame, model=model, concurrency=CONCURRENCY, checkpoint=False, progress=False
                )
            )
            server.arrivals()
            figures["dask"] = {
                "wall_s": on_dask,
                "in_process_wall_s": in_process,
                "ratio": on_dask / in_process,
            }
            met["dask_wall_ratio"] = on_dask / in_process <= TARGETS["dask_wall_ratio"]
            met["dask_correct"] = figures["dask_rows"] == args.rows
    finally:
        server.close()

    print(f"{args.rows} rows, {LATENCY_S * 1000:.0f} ms each, concurrency {CONCURRENCY}")
    print(f"  ideal {ideal:.2f} s · raw httpx {raw:.2f} s · nbllm {ours:.2f} s")
    print(f"  nbllm / ideal {ours / ideal:.3f} (target <= 1.2) · nbllm / raw httpx {ours / raw:.3f}")
    resume = figures["resume"]
    print(
        f"  interrupt at {resume['rows_done_before_the_interrupt']} rows done: the rerun sent "
        f"{resume['sent_on_the_rerun']} (exactly the rest: {met['resume_exact']})"
    )
    if "rpm" in figures:
        rpm = figures["rpm"]
        print(
            f"  rpm=600: at most {rpm['max_in_any_minute']} in any minute, "
            f"{rpm['mean_per_minute']:.1f} a minute on average"
        )
    if "dask" in figures:
        dask_figures = figures["dask"]
        print(
            f"  LocalCluster(2): {dask_figures['wall_s']:.2f} s vs in-process "
            f"{dask_figures['in_process_wall_s']:.2f} s, "
            f"ratio {dask_figures['ratio']:.3f} (target <= 1.3)"
        )
    print("  targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    write_results(args.out, TARGETS, met, figures, args.check)


if __name__ == "__main__":
    main()
