"""The documentation cannot rot: every Python and ``%%chat`` example in the guides runs, in a
real IPython shell, against nbllm's loopback server; the magics reference covers every magic
and every option; every environment variable the code reads is documented.

How the examples run: the blocks of one page run in order, in one shell, as a reader would run
them in one notebook. Before them, the page's providers' URLs are pointed at a loopback server
(``--url`` of ``%llm_provider add`` is replaced, and providers the examples use without adding
them, ``gw``, ``openrouter`` and ``local``, are registered there), a few variables the
examples name (``df``, ``texts``, ``error_text``) are defined, the working folder and the
config, log and cache paths are temporary, and every key variable holds the test key. A block
a loopback server cannot run says so in a comment just above it (``<!-- not run: why -->``);
there are at most `MAX_NOT_RUN` of them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import nbllm
from nbllm.testing import LoopbackServer, serve
from tests.helpers import SENTINEL_KEY

ROOT = Path(__file__).resolve().parent.parent
GUIDES = [*sorted((ROOT / "docs" / "guides").glob("*.md")), ROOT / "docs" / "getting-started.md"]
BLOCK = re.compile(r"(<!-- not run: (?P<why>[^>]+) -->\n)?```python\n(?P<code>.*?)\n```", re.S)
MAX_NOT_RUN = 3
PROVIDER_URL = re.compile(r"(%llm_provider add \S+.*?--url )(\S+)")
MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "some-model",
    "smollm2",
    "qwen2.5-coder:7b",
    "text-embedding-3-small",
)


def examples(page: Path) -> list[tuple[str, str | None]]:
    """(code, why it is not run or None) of each Python block on the page."""
    return [(m.group("code"), m.group("why")) for m in BLOCK.finditer(page.read_text())]


def answer(body: dict[str, Any]) -> str:
    """JSON to a request that asks for it (a schema, JSON mode), else a sentence."""
    asked = json.dumps(body.get("messages", []))
    if body.get("response_format") or "JSON" in asked:
        return '{"label": "bug"}'
    return "An answer from the loopback server."


def load_hooks() -> Any:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def reader(ip: Any, tmp_path: Path, monkeypatch: Any) -> Iterator[LoopbackServer]:
    """A reader's setting: a loopback server for every endpoint, the usual variables."""
    monkeypatch.chdir(tmp_path)
    for variable in (
        "OPENROUTER_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GW_API_KEY",
        "CORP_KEY",
    ):
        monkeypatch.setenv(variable, SENTINEL_KEY)
    monkeypatch.setenv("NBLLM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NBLLM_LOG", str(tmp_path / "log.db"))
    monkeypatch.setenv("NBLLM_LIVE", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nbllm.map's checkpoints
    with serve(reply=answer, embedding_dimensions=1024) as server:
        capabilities = "tools,vision,json,embeddings"
        models = {model: {"capabilities": capabilities, "context_window": 32768} for model in MODELS}
        for name in ("gw", "openrouter", "local"):
            nbllm.get_store().add_provider(
                nbllm.ProviderConfig(name=name, url=server.base_url, auth="none", models=models)
            )
        ip.user_ns.update(
            df=pd.DataFrame({"title": ["Crash on save", "Add dark mode"], "text": ["one", "two"]}),
            texts=["one text", "another"],
            error_text="ZeroDivisionError: division by zero",
            loopback_url=server.base_url,
        )
        yield server


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.stem)
def test_every_example_in_the_guides_runs(page: Path, ip: Any, reader: LoopbackServer) -> None:
    ran = 0
    for code, why in examples(page):
        if why:
            continue
        runnable = PROVIDER_URL.sub(lambda m: m.group(1) + reader.base_url, code)
        result = ip.run_cell(runnable)
        assert result.success, f"{page.name}: this example failed:\n{code}\n{result.error_in_exec!r}"
        failed = [r for r in nbllm.history() if r.status == "error"]
        assert not failed, f"{page.name}: a call of this example failed:\n{code}\n{failed[-1].error_message}"
        ran += 1
    print(f"{page.name}: {ran} example(s) ran")


def test_few_examples_are_left_out_and_each_says_why() -> None:
    left_out = [(page.name, why) for page in GUIDES for _, why in examples(page) if why]
    assert len(left_out) <= MAX_NOT_RUN, left_out
    total = sum(len(examples(page)) for page in GUIDES)
    assert total >= 12  # the guides do show code
    print(f"{total - len(left_out)} of {total} guide examples run; left out: {left_out}")


def test_the_magics_reference_has_every_magic_and_option(ip: Any) -> None:
    page = load_hooks().magics()
    hooks = load_hooks()
    for heading, _, parser in hooks.argument_magics():
        assert f"## `{heading}`" in page
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in page, f"{heading} {option} is missing from the reference"
    ours = {
        name
        for kind in ("line", "cell")
        for name, function in ip.magics_manager.magics[kind].items()
        if getattr(getattr(function, "__self__", None), "__module__", "").startswith("nbllm.")
    }
    for name in ours:
        assert f"%{name}" in page, f"the magic %{name} is missing from the reference"


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    documented = set(load_hooks().ENVIRONMENT)
    source = "\n".join(p.read_text() for p in (ROOT / "nbllm").rglob("*.py"))
    read = set(re.findall(r"\bNBLLM_[A-Z_]+[A-Z]\b", source)) - {"NBLLM_MY_VLLM_API_KEY"}
    assert read <= documented, sorted(read - documented)
