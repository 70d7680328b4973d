"""A kernel whose front end has no widget manager (``NBLLM_WIDGETS=0``, issue 33): a reasoning
reply streams its thinking as dimmed Markdown above the answer, and a batch run's progress is
text; no widget is opened, so nothing shows as a line of "loading widget" text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbllm.testing import serve
from tests.kernel_session import KernelSession

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    env = {
        "NBLLM_CONFIG_DIR": str(tmp_path_factory.mktemp("no-widgets-config")),
        "NBLLM_LIVE": "1",
        "NBLLM_WIDGETS": "0",
    }
    with KernelSession(env) as session:
        session.check("%load_ext nbllm\nimport nbllm")
        yield session


def test_thinking_and_answer_stream_as_markdown(kernel: KernelSession) -> None:
    thinking = " ".join(f"t{i:03d}" for i in range(80))
    answer = "The answer is " + " ".join(f"a{i:02d}" for i in range(20))
    with serve(reply=answer, reasoning=thinking, tokens_per_s=100) as thinker:
        kernel.check(f"%llm_provider add thinker --url {thinker.base_url} --model m=100000 --caps reasoning")
        execution = kernel.check("%%chat thinker/m\nwhy?", timeout=30)
    assert execution.of_type("comm_open") == []
    displays = [m["content"]["data"] for m in execution.displays()]
    assert all(WIDGET_VIEW not in data for data in displays)
    live = [data["text/markdown"] for data in displays[1:-1]]
    thinking_frames = [text for text in live if text.startswith("> *Thinking")]
    assert len(thinking_frames) >= 2 and "t000" in thinking_frames[0]
    answer_frames = [text for text in live if "The answer is" in text]
    assert answer_frames and answer_frames[-1].startswith("> *Thought for")
    final = displays[-1]["text/markdown"]
    assert final.startswith("<details><summary><i>Thought for ") and answer in final


def test_batch_progress_is_text(kernel: KernelSession) -> None:
    with serve(reply="fine") as server:
        kernel.check(f"%llm_provider add loop --url {server.base_url} --model m")
        execution = kernel.check(
            'out = nbllm.map("{n}", [{"n": i} for i in range(4)], model="loop/m", checkpoint=False)'
        )
    assert execution.of_type("comm_open") == []
    progress = "".join(m["content"]["text"] for m in execution.of_type("stream"))
    assert "4 ok" in progress or "4/4" in progress, progress
