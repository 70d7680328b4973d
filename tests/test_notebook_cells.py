"""The cells the user ran as context (issue 30): --cells' budget, and what %explain sends about
an error raised inside a library (its frames collapsed, the user's frame and locals kept)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from nbllm._cells.notebook_cells import CellLog, explain_prompt


def ran(
    log: CellLog, number: int, code: str, value: object = None, error: BaseException | None = None
) -> None:
    log.record(SimpleNamespace(info=SimpleNamespace(raw_cell=code), execution_count=number, result=value,
                               error_in_exec=error, error_before_exec=None))  # fmt: skip


def test_recent_cells_drop_the_oldest_to_fit_and_say_so() -> None:
    log = CellLog()
    for number in range(1, 7):
        ran(log, number, f"step_{number} = {'x' * 900!r}")
    text = log.context(6, 600)  # 2,400 characters: room for two cells
    assert "left out to fit" in text and "step_6" in text and "step_1" not in text
    ran(log, 7, "1 / 0", error=ZeroDivisionError("division by zero"))
    assert log.errors == {7: "ZeroDivisionError: division by zero"}
    assert "It raised ZeroDivisionError: division by zero" in log.context(1, 1_500)


def test_explain_collapses_library_frames_and_keeps_the_users_locals() -> None:
    def load(settings_text: str) -> object:
        retries = 3
        return json.loads(settings_text) if retries else None

    try:
        load("{not json")
    except ValueError as caught:
        error = caught
    prompt = explain_prompt(error, "load('{not json')", None)
    assert "The cell that failed:\n```python\nload('{not json')\n```" in prompt
    assert "The error: JSONDecodeError: Expecting property name" in prompt
    assert "in load: return json.loads(settings_text) if retries else None" in prompt
    assert "frames inside libraries]" in prompt and "decoder.py" not in prompt
    assert "- retries (int): 3" in prompt and "- settings_text (str): {not json" in prompt
