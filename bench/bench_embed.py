"""Embeddings speed: `nbllm.embed` beside raw httpx, in the same run.

The baseline is what a careful user would write with httpx: one pooled `AsyncClient`, the same
batches, the same number of requests in flight, ``response.json()`` and one
``numpy.asarray(..., float32)`` at the end. nbllm goes through its whole public path
(`nbllm.aembed`: name resolution, input checks, rate limit, retries, reply checks, history).
Each measure runs both interleaved, several times, and compares medians (the machines are
shared and noisy, so the targets are ratios). The loopback server runs in its own process, so
the CPU measured is the client's alone.

| measure | target |
| CPU, 2,048 texts x 768 dimensions, batches of 32, one request at a time | <= 1.25x raw httpx |
| wall, the same with 4 requests in flight | <= 1.10x raw httpx |
| wall, llama.cpp's llama-server with SmolLM2, 64 texts (when installed) | <= 1.05x raw httpx |

    python bench/bench_embed.py [--repeat 5] [--no-llama-server] [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbllm
from bench.common import interleaved, loopback, register, write_results

TEXTS = [f"sentence number {i} about the weather, the sea and the price of fish" for i in range(2048)]
DIMENSIONS = 768
BATCH = 32
TARGETS = {
    "loopback_cpu_ratio": 1.25,
    "loopback_concurrent_wall_ratio": 1.10,
    "llama_server_wall_ratio": 1.05,
}


async def raw_embed(
    client: httpx.AsyncClient,
    url: str,
    model: str,
    texts: list[str],
    concurrency: int,
    key: str | None = None,
) -> Any:
    """The baseline: the same batches with httpx, `concurrency` at a time, vectors in order."""
    slots = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def batch(start: int) -> list[list[float]]:
        async with slots:
            response = await client.post(
                url, json={"model": model, "input": texts[start : start + BATCH]}, headers=headers
            )
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            return [item["embedding"] for item in data]

    parts = await asyncio.gather(*(batch(start) for start in range(0, len(texts), BATCH)))
    return numpy.asarray([vector for part in parts for vector in part], dtype=numpy.float32)


async def paired(
    repeat: int, raw: Callable[[], Awaitable[Any]], ours: Callable[[], Awaitable[Any]]
) -> dict[str, float]:
    """Medians of interleaved runs (after one warm-up each); checks both give the same vectors."""
    expected, got = await raw(), await ours()
    # llama-server's floats differ in the last bits from one request to the next.
    assert numpy.allclose(expected, got, atol=1e-4), "nbllm and the baseline disagree"
    return await interleaved(repeat, raw, ours)


async def loopback_measures(repeat: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=120) as client:
        with loopback("--embedding-dimensions", str(DIMENSIONS)) as url:
            model = register("loop", url)
            for concurrency, label, ratio_of in ((1, "sequential", "cpu"), (4, "concurrent", "wall")):
                row = await paired(
                    repeat,
                    lambda c=concurrency: raw_embed(client, f"{url}/embeddings", "m", TEXTS, c),
                    lambda c=concurrency: nbllm.aembed(TEXTS, model, batch_size=BATCH, concurrency=c),
                )
                row["ratio"] = row[f"nbllm_{ratio_of}_s"] / row[f"raw_{ratio_of}_s"]
                figures[f"loopback_{label}"] = row
    return figures


async def llama_server_measure(repeat: int) -> dict[str, Any] | None:
    """The same against llama.cpp's llama-server serving SmolLM2 embeddings, when it is installed
    (``python tests/conformance/install_servers.py``)."""
    from tests.conformance import servers

    if not servers.llama_server_path().exists():
        return None
    logs = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    server = servers.start_llama_server(logs, embeddings=True)
    try:
        servers.wait_ready(server)
        model = register("llamacpp", server.base_url, key=server.key, model=servers.MODEL)
        texts = TEXTS[:64]
        async with httpx.AsyncClient(timeout=120) as client:
            url = f"{server.base_url}/embeddings"
            row = await paired(
                repeat,
                lambda: raw_embed(client, url, servers.MODEL, texts, 1, server.key),
                lambda: nbllm.aembed(texts, model, batch_size=BATCH, concurrency=1),
            )
        row["ratio"] = row["nbllm_wall_s"] / row["raw_wall_s"]
        row["label"] = server.label
        return row
    finally:
        server.stop()
        shutil.rmtree(logs, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs per measure")
    parser.add_argument("--no-llama-server", action="store_true", help="skip the real llama-server")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_embed.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    figures = asyncio.run(loopback_measures(args.repeat))
    if not args.no_llama_server:
        real = asyncio.run(llama_server_measure(max(2, args.repeat // 2)))
        if real is not None:
            figures["llama_server_64_texts"] = real
    met = {
        "loopback_cpu_ratio": figures["loopback_sequential"]["ratio"] <= TARGETS["loopback_cpu_ratio"],
        "loopback_concurrent_wall_ratio": figures["loopback_concurrent"]["ratio"]
        <= TARGETS["loopback_concurrent_wall_ratio"],
    }
    if "llama_server_64_texts" in figures:
        met["llama_server_wall_ratio"] = (
            figures["llama_server_64_texts"]["ratio"] <= TARGETS["llama_server_wall_ratio"]
        )
    rows = [
        (
            "loopback, 2,048 x 768, one at a time, CPU s",
            figures["loopback_sequential"],
            "cpu",
            "loopback_cpu_ratio",
        ),
        (
            "loopback, 4 in flight, wall s",
            figures["loopback_concurrent"],
            "wall",
            "loopback_concurrent_wall_ratio",
        ),
    ]
    if "llama_server_64_texts" in figures:
        rows.append(
            (
                "llama-server, 64 texts, wall s",
                figures["llama_server_64_texts"],
                "wall",
                "llama_server_wall_ratio",
            )
        )
    print(f"{'measure':<46}{'raw httpx':>11}{'nbllm':>11}{'ratio':>8}  target")
    for label, row, of, key in rows:
        print(
            f"{label:<46}{row[f'raw_{of}_s']:>11.3f}{row[f'nbllm_{of}_s']:>11.3f}{row['ratio']:>8.3f}"
            f"  <= {TARGETS[key]} " + ("met" if met[key] else "MISSED")
        )
    write_results(args.out, TARGETS, met, figures, args.check)


if __name__ == "__main__":
    main()
