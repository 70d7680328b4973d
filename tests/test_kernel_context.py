"""The notebook as context (issue 30) in a real kernel (ipykernel over ZMQ) against the
loopback server, which records what it received: a frame's summary and not the frame, no
values at --context schema, an object's _repr_llm_, a figure as an image part for a vision
model only, and what --dry-run and --show-context show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from nbllm.testing import LoopbackServer, serve
from tests.kernel_session import KernelSession

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

FRAME = """
import numpy as np, pandas as pd
rng = np.random.default_rng(7)
sales = pd.DataFrame({
    "order_id": [f"ORD-{i:06d}" for i in range(50_000)],
    "city": rng.choice(["Paris", "Lyon", "Nice"], 50_000),
    "amount": rng.normal(100, 15, 50_000).round(2),
})
"""


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with serve(reply="Noted.") as running:
        yield running


@pytest.fixture(scope="module")
def kernel(server: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    env = {"NBLLM_CONFIG_DIR": str(tmp_path_factory.mktemp("context-config")), "NBLLM_LIVE": "0"}
    with KernelSession(env) as session:
        session.check("%load_ext nbllm")
        session.check(f"%llm_provider add loop --url {server.base_url} --auth none --model text=100000")
        session.check(
            f"%llm_provider add eyes --url {server.base_url} --auth none --model m=100000 --caps vision"
        )
        session.check(FRAME)
        yield session


def sent_prompt(server: LoopbackServer) -> Any:
    return [r for r in server.requests if r.method == "POST"][-1].body["messages"][-1]["content"]


def test_a_frame_arrives_as_a_summary_not_as_the_frame(kernel: KernelSession, server: LoopbackServer) -> None:
    kernel.check("%%chat loop/text\nWhich city sells most? {sales}")
    prompt = sent_prompt(server)
    assert "50,000 rows \N{MULTIPLICATION SIGN} 3 columns" in prompt
    for fact in ("| order_id | str |", "| amount | float64 |", "Paris", "First rows:", "Random rows:"):
        assert fact in prompt, fact
    assert "ORD-000000" in prompt  # the first rows
    assert sum(f"ORD-{i:06d}" in prompt for i in range(50_000)) <= 10  # not the frame
    assert len(prompt) < 1_500 * 4 + 200  # the default budget


def test_schema_sends_no_values(kernel: KernelSession, server: LoopbackServer) -> None:
    kernel.check("%%chat loop/text --context schema\nWrite pandas code to total {sales} by city.")
    prompt = sent_prompt(server)
    assert "| city | str |" in prompt and "schema only: no values" in prompt
    assert "ORD-" not in prompt and "Paris" not in prompt and "min " not in prompt


def test_an_objects_repr_llm_wins(kernel: KernelSession, server: LoopbackServer) -> None:
    kernel.check(
        "class Experiment:\n"
        "    def __str__(self): return 'opaque'\n"
        "    def _repr_llm_(self): return 'Experiment 12: accuracy 0.91 on 3 folds'\n"
        "run = Experiment()"
    )
    kernel.check("%%chat loop/text\nHow did it go? {run}")
    assert "Experiment 12: accuracy 0.91" in sent_prompt(server) and "opaque" not in sent_prompt(server)


def test_a_figure_goes_as_an_image_to_a_vision_model_only(
    kernel: KernelSession, server: LoopbackServer
) -> None:
    kernel.check(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(12, 8))\nax.plot([1, 3, 2])"
    )
    kernel.check("%%chat eyes/m -c figure\nWhat trend? {fig}")
    parts = sent_prompt(server)
    assert parts[0] == {"type": "text", "text": "What trend? [image 1: fig]"}
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    import base64
    import struct

    png = base64.b64decode(url.split(",", 1)[1])
    width, height = struct.unpack(">II", png[16:24])
    assert max(width, height) <= 1024  # scaled to the bound, not 1,200 px wide
    posts = len([r for r in server.requests if r.method == "POST"])
    refused = kernel.execute("%%chat loop/text -c other\nWhat trend? {fig}")
    card = json.dumps([m["content"]["data"] for m in refused.displays()])
    assert refused.status == "error" and "vision" in card and "CapabilityError" in card
    assert len([r for r in server.requests if r.method == "POST"]) == posts  # nothing was sent


def test_dry_run_and_show_context_list_every_part(kernel: KernelSession, server: LoopbackServer) -> None:
    posts = len([r for r in server.requests if r.method == "POST"])
    dry = kernel.check("%%chat loop/text --dry-run\nCompare {sales} with {sales.amount} at {run}")
    shown = dry.stdout() + json.dumps([m["content"] for m in dry.displays()])
    assert "Context from the notebook (3 parts)" in shown
    assert "{sales}: pandas DataFrame, ~" in shown and "{sales.amount}: pandas Series" in shown
    assert "{run}: _repr_llm_" in shown
    assert len([r for r in server.requests if r.method == "POST"]) == posts
    seen = kernel.check("%%chat loop/text --show-context\nSummarise {sales}")
    assert "pandas DataFrame" in json.dumps([m["content"] for m in seen.displays()])


def test_cells_carries_the_last_cells_code_and_outputs(kernel: KernelSession, server: LoopbackServer) -> None:
    kernel.check("answer = 41\nanswer + 1")
    kernel.check("words = ['alpha', 'beta']\nlen(words)")
    kernel.check("%%chat loop/text -c cells --cells 2\nWhat did I just compute?")
    prompt = sent_prompt(server)
    assert "The last 2 cells the user ran" in prompt
    assert "answer = 41\nanswer + 1" in prompt and "\n42" in prompt
    assert "words = ['alpha', 'beta']" in prompt and prompt.index("answer = 41") < prompt.index("words =")
    assert prompt.endswith("What did I just compute?")


def test_explain_sends_the_cell_the_frame_and_its_locals(
    kernel: KernelSession, server: LoopbackServer
) -> None:
    kernel.check("def ratio(a, b):\n    scale = 10\n    return a / b * scale")
    failed = kernel.execute("total = 3\nratio(total, 0)")
    assert failed.status == "error"
    explained = kernel.check("%explain loop/text -c why")
    assert explained.status == "ok"
    prompt = sent_prompt(server)
    assert prompt.startswith("Explain what caused this error and how to fix it.")
    assert "total = 3\nratio(total, 0)" in prompt and "ZeroDivisionError: division by zero" in prompt
    assert "in ratio: return a / b * scale" in prompt
    assert "- a (int): 3" in prompt and "- b (int): 0" in prompt and "- scale (int): 10" in prompt
    errors = kernel.check("print(sorted(Err.values())[-1])")
    assert "ZeroDivisionError: division by zero" in errors.stdout()
    kernel.check("%%explain loop/text -c why\nIs b ever zero on purpose?")
    assert sent_prompt(server).startswith("Is b ever zero on purpose?")
