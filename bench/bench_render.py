"""Kernel cost of streaming a reply into a notebook: CPU and iopub traffic.

A real kernel (ipykernel over ZMQ) runs ``%%chat`` against the loopback server
sending 5,000 tokens at 500 tokens/s, in three set-ups:

- ``throttled``: the defaults (50 ms throttle stretched with the text, reads gathered);
- ``throttled_per_read``: the throttle, but every token read and handled on its own;
- ``per_token``: one display update per token (no throttle, no gathering) - the naive way.

It prints a table and writes the figures as JSON (default ``bench/results/bench_render.json``).
Targets for ``throttled``: kernel CPU <= 0.4 s, iopub bytes <= 20x the reply's size;
``--check`` exits 1 if they are missed. Figures vary with the machine: compare the rows
of one run, not runs on different machines.

    python bench/bench_render.py [--tokens 5000] [--rate 500] [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbllm.testing import serve
from tests.kernel_session import KernelSession, wire_size

TARGET_CPU_S = 0.4
TARGET_BYTES_RATIO = 20.0

SETUPS = {
    "throttled": [],
    "throttled_per_read": ["import nbllm._calls.client\nnbllm._calls.client.STREAM_READ_GATHER_S = 0"],
    "per_token": [
        "import nbllm._calls.client\nnbllm._calls.client.STREAM_READ_GATHER_S = 0",
        "%config ChatMagics.throttle_ms = 0",
    ],
}


def run(tokens: int, rate: float) -> dict[str, object]:
    reply = " ".join(f"w{i:05d}"[:7] for i in range(tokens))
    reply_bytes = len(reply.encode())
    rows: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as config, serve(reply=reply, tokens_per_s=rate) as server:
        for name, setup in SETUPS.items():
            with KernelSession({"NBLLM_CONFIG_DIR": config, "NBLLM_LIVE": "1"}) as kernel:
                kernel.check("%load_ext nbllm")
                kernel.check(f"%llm_provider add loop --url {server.base_url} --model test-model=1000000")
                kernel.check("%%chat\nwarm up")  # imports and first-call costs are not the subject
                for code in setup:
                    kernel.check(code)
                cpu_before = kernel.cpu_s()
                started = time.monotonic()
                execution = kernel.check("%%chat -c bench\nstream it", timeout=tokens / rate * 3 + 30)
                wall = time.monotonic() - started
                cpu = kernel.cpu_s() - cpu_before
            wire = sum(wire_size(m) for m in execution.iopub)
            final = execution.displays()[-1]["content"]["data"]["text/plain"]
            if reply not in final:
                raise SystemExit(f"{name}: the final output does not hold the whole reply")
            rows[name] = {
                "kernel_cpu_s": round(cpu, 3),
                "wall_s": round(wall, 2),
                "iopub_messages": len(execution.iopub),
                "display_updates": len(execution.displays()),
                "iopub_bytes": wire,
                "bytes_per_reply_byte": round(wire / reply_bytes, 2),
            }
    return {
        "tokens": tokens,
        "tokens_per_s": rate,
        "reply_bytes": reply_bytes,
        "targets": {"kernel_cpu_s": TARGET_CPU_S, "bytes_per_reply_byte": TARGET_BYTES_RATIO},
        "setups": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_render.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if the throttled set-up misses a target")
    args = parser.parse_args()
    figures = run(args.tokens, args.rate)
    print(f"{args.tokens} tokens at {args.rate:g} tok/s, reply {figures['reply_bytes']} bytes")
    print(f"{'setup':<20}{'CPU s':>8}{'wall s':>8}{'updates':>9}{'iopub KB':>10}{'x reply':>9}")
    for name, row in figures["setups"].items():  # type: ignore[union-attr]
        print(
            f"{name:<20}{row['kernel_cpu_s']:>8.2f}{row['wall_s']:>8.2f}{row['display_updates']:>9}"
            f"{row['iopub_bytes'] / 1000:>10.0f}{row['bytes_per_reply_byte']:>9.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")
    throttled = figures["setups"]["throttled"]  # type: ignore[index]
    met = (
        throttled["kernel_cpu_s"] <= TARGET_CPU_S and throttled["bytes_per_reply_byte"] <= TARGET_BYTES_RATIO
    )
    print(
        f"targets (CPU <= {TARGET_CPU_S} s, bytes <= {TARGET_BYTES_RATIO:g}x reply): "
        + ("met" if met else "MISSED")
    )
    if args.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
