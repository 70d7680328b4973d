"""A long Markdown reply shaped like a model's (paragraphs, lists, fenced code, tables), for the
rendering tests and `bench/bench_render.py`: the same text for the same length, every run."""

from __future__ import annotations

import random
import re

_TEXT = (
    "the model reads each row of the frame and keeps a running total while the kernel waits "
    "for the next chunk so that a long answer stays readable on screen as it grows"
)
_WORDS = tuple(_TEXT.split(" "))


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def _block(rng: random.Random, number: int) -> str:
    kind = number % 9
    if kind == 4:
        lines = [f"total_{i} = sum(row[{i}] for row in rows)  # step {i}" for i in range(rng.randint(8, 30))]
        return "```python\n" + "\n".join(lines) + "\n```"
    if kind == 7:
        rows = [
            f"| row {i} | {rng.randint(0, 999)} | {rng.choice(_WORDS)} |" for i in range(rng.randint(4, 16))
        ]
        return "| name | value | note |\n| --- | ---: | --- |\n" + "\n".join(rows)
    if kind == 2:
        return "\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(3, 7)))
    if kind == 0:
        return f"## Part {number // 9 + 1}"
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))


def markdown_reply(tokens: int, seed: int = 0) -> str:
    """About `tokens` words of Markdown (a word is what `nbllm.testing` sends per event)."""
    rng = random.Random(seed)
    blocks: list[str] = []
    count = 0
    while count < tokens:
        block = _block(rng, len(blocks))
        blocks.append(block)
        count += len(re.findall(r"\S+\s*", block))
    return "\n\n".join(blocks)
