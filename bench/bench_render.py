"""Kernel cost of streaming a reply into a notebook: CPU and iopub traffic.

A real kernel (ipykernel over ZMQ) runs ``%%chat`` against the loopback server sending
5,000 tokens at 500 tokens/s, each as its own HTTP chunk (as real servers do), in two set-ups:

- ``throttled``: the defaults (50 ms throttle, stretched with the text's length);
- ``per_token``: one display update per token (no throttle) - the naive way;
- ``thinking``: the defaults, with the same tokens sent as a reasoning model's thinking
  (``reasoning_content``) before a short answer: they stream into the collapsed thinking
  section, a widget whose text is resent on each (throttled) update.

``done_ratio`` is the cell's time over the server's time to send the reply: what the throttle
and the kernel add to the wait.

It prints a table and writes the figures as JSON (default ``bench/results/bench_render.json``).
Targets for ``throttled`` and ``thinking``: kernel CPU <= 0.4 s, iopub bytes <= 20x the reply's size, done
<= 1.05x the server's time;
``--check`` exits 1 if they are missed. Figures vary with the machine: compare the rows
of one run, not runs on different machines.

    python bench/bench_render.py [--tokens 5000] [--rate 500] [--framing chunked] [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbllm.testing import FRAMINGS, serve
from tests.kernel_session import KernelSession, wire_size

TARGET_CPU_S = 0.4
TARGET_BYTES_RATIO = 20.0
TARGET_DONE_RATIO = 1.05

SETUPS = {
    "throttled": [],
    "per_token": ["%config ChatMagics.throttle_ms = 0"],
    "thinking": [],
}
THINKING_ANSWER = "Done."


def run(tokens: int, rate: float, framing: str) -> dict[str, object]:
    reply = " ".join(f"w{i:05d}"[:7] for i in range(tokens))
    reply_bytes = len(reply.encode())
    rows: dict[str, object] = {}
    with (
        tempfile.TemporaryDirectory() as config,
        serve(reply=reply, tokens_per_s=rate, framing=framing) as server,
    ):
        for name, setup in SETUPS.items():
            with KernelSession({"NBLLM_CONFIG_DIR": config, "NBLLM_LIVE": "1"}) as kernel:
                kernel.check("%load_ext nbllm")
                kernel.check(f"%llm_provider add loop --url {server.base_url} --model test-model=1000000")
                kernel.check("%%chat\nwarm up")  # imports and first-call costs are not the subject
                for code in setup:
                    kernel.check(code)
                thinking = name == "thinking"
                server.reasoning = reply if thinking else None
                server.reply = THINKING_ANSWER if thinking else reply
                cpu_before = kernel.cpu_s()
                started = time.monotonic()
                execution = kernel.check("%%chat -c bench\nstream it", timeout=tokens / rate * 3 + 30)
                wall = time.monotonic() - started
                cpu = kernel.cpu_s() - cpu_before
                sent = server.requests[-1]
                assert sent.done_at is not None, "the server did not finish the reply"
                server_s = sent.done_at - sent.at
            wire = sum(wire_size(m) for m in execution.iopub)
            final = execution.displays()[-1]["content"]["data"]["text/markdown"]
            if reply not in final:
                raise SystemExit(f"{name}: the final output does not hold the whole reply")
            rows[name] = {
                "kernel_cpu_s": round(cpu, 3),
                "wall_s": round(wall, 2),
                "server_s": round(server_s, 2),
                "done_ratio": round(wall / server_s, 3),
                "iopub_messages": len(execution.iopub),
                "display_updates": len(execution.displays()),
                "iopub_bytes": wire,
                "bytes_per_reply_byte": round(wire / reply_bytes, 2),
            }
    return {
        "tokens": tokens,
        "tokens_per_s": rate,
        "framing": framing,
        "reply_bytes": reply_bytes,
        "targets": {
            "kernel_cpu_s": TARGET_CPU_S,
            "bytes_per_reply_byte": TARGET_BYTES_RATIO,
            "done_ratio": TARGET_DONE_RATIO,
        },
        "setups": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="chunked",
        help="chunked: one HTTP chunk per event, as real servers",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_render.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if the throttled set-up misses a target")
    args = parser.parse_args()
    figures = run(args.tokens, args.rate, args.framing)
    reply_bytes = figures["reply_bytes"]
    print(f"{args.tokens} tokens at {args.rate:g} tok/s, {args.framing} framing, reply {reply_bytes} bytes")
    columns = ("CPU s", "wall s", "server s", "done x", "updates", "iopub KB", "x reply")
    print(f"{'setup':<12}" + "".join(f"{c:>10}" for c in columns))
    for name, row in figures["setups"].items():  # type: ignore[union-attr]
        print(
            f"{name:<12}{row['kernel_cpu_s']:>10.2f}{row['wall_s']:>10.2f}{row['server_s']:>10.2f}"
            f"{row['done_ratio']:>10.3f}{row['display_updates']:>10}"
            f"{row['iopub_bytes'] / 1000:>10.0f}{row['bytes_per_reply_byte']:>10.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")
    met = True
    for name in ("throttled", "thinking"):
        row = figures["setups"][name]  # type: ignore[index]
        row_met = (
            row["kernel_cpu_s"] <= TARGET_CPU_S
            and row["bytes_per_reply_byte"] <= TARGET_BYTES_RATIO
            and row["done_ratio"] <= TARGET_DONE_RATIO
        )
        met = met and row_met
        print(
            f"{name} targets (CPU <= {TARGET_CPU_S} s, bytes <= {TARGET_BYTES_RATIO:g}x reply, "
            f"done <= {TARGET_DONE_RATIO}x server): " + ("met" if row_met else "MISSED")
        )
    if args.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
