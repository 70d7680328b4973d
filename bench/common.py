"""What the benchmarks share: the loopback server in its own process, registering an endpoint,
and timing one run (wall and this process's CPU)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbllm


@contextmanager
def loopback(*options: str) -> Iterator[str]:
    """``python -m nbllm.testing`` with `options`, in its own process (so the CPU measured here
    is the client's alone); yields its base URL."""
    command = [sys.executable, "-m", "nbllm.testing", "--port", "0", *options]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            yield process.stdout.readline().rsplit(" ", 1)[-1].strip()
        finally:
            process.terminate()


def register(name: str, base_url: str, key: str | None = None, model: str = "m") -> str:
    """Register an endpoint with one model; returns the model's qualified name."""
    auth = "bearer" if key else "none"
    config = nbllm.ProviderConfig(name=name, url=base_url, key=key, auth=auth, models={model: {}})
    nbllm.get_store().add_provider(config, replace=True)
    return f"{name}/{model}"


async def measure(run: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def interleaved(
    repeat: int, raw: Callable[[], Awaitable[Any]], ours: Callable[[], Awaitable[Any]]
) -> dict[str, float]:
    """Medians of `repeat` runs of the baseline and of nbllm, taken in turn (so both see the
    same noise), as raw_/nbllm_ wall_s and cpu_s."""
    raw_runs, our_runs = [], []
    for _ in range(repeat):
        raw_runs.append(await measure(raw))
        our_runs.append(await measure(ours))
    return {
        "raw_wall_s": statistics.median(w for w, _ in raw_runs),
        "nbllm_wall_s": statistics.median(w for w, _ in our_runs),
        "raw_cpu_s": statistics.median(c for _, c in raw_runs),
        "nbllm_cpu_s": statistics.median(c for _, c in our_runs),
    }


def bench_parser(doc: str | None, results_file: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: where its figures go (``bench/results/``), and whether
    a missed target makes it fail."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / results_file)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser


def write_results(
    out: Path, targets: dict[str, float], met: dict[str, bool], figures: dict[str, Any], check: bool
) -> None:
    """Write the figures to `out` (JSON, under bench/results/), and with `check` exit 1 when a
    target was missed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"targets": targets, "met": met, "figures": figures}, indent=2) + "\n")
    print(f"written to {out}")
    if check and not all(met.values()):
        sys.exit(1)
