"""How `pytest --nbval` runs the tutorials: each notebook's kernel starts with

- ``NBLLM_LIVE=0``: replies render once, finished (nbval 0.11 ignores display updates, so it
  would compare the empty first frame of a live reply with the saved final text);
- an empty nbllm config directory, so providers saved on this machine are not loaded;
- the test key in every key variable the tutorials read, so a key that leaked into an output
  would show up in the comparison and in tests/test_notebooks.py's scan.

nbval starts the kernel while it sets up a notebook's first cell, before any fixture could
act, hence a hook around that setup rather than a fixture.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.helpers import SENTINEL_KEY

KEY_VARIABLES = ("OPENROUTER_API_KEY", "AZURE_OPENAI_API_KEY", "GATEWAY_API_KEY")


def tutorial_environment(config_dir: str) -> dict[str, str]:
    return {"NBLLM_LIVE": "0", "NBLLM_CONFIG_DIR": config_dir} | dict.fromkeys(KEY_VARIABLES, SENTINEL_KEY)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(tutorial_environment(tempfile.mkdtemp(prefix="nbllm-tutorial-")))
    try:
        yield
    finally:  # the kernel has its copy; the rest of the session keeps its own environment
        os.environ.clear()
        os.environ.update(saved)
