"""`%llm_provider` through a real IPython shell."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import CapturedIO, capture_output

import nbllm
from tests.helpers import SENTINEL_KEY

LOCAL = "http://127.0.0.1:8000/v1"


@pytest.fixture
def html(ip: Any) -> Iterator[None]:
    """Make the shell compute HTML as a notebook front end would."""
    formatter = ip.display_formatter
    before = formatter.active_types
    formatter.active_types = ["text/plain", "text/html"]
    yield
    formatter.active_types = before


def run(ip: Any, line: str) -> CapturedIO:
    with capture_output() as captured:
        ip.run_line_magic("llm_provider", line)
    return captured


def cell(ip: Any, line: str, body: str) -> CapturedIO:
    with capture_output() as captured:
        ip.run_cell_magic("llm_provider", line, body)
    return captured


def test_add_list_show_remove(ip: Any, html: None) -> None:
    out = run(
        ip,
        f"add local --url {LOCAL}/ --model qwen2.5-coder:7b=32768 --model "
        "meta-llama/Llama-3.1-8B-Instruct --caps tools,json --auth none",
    )
    assert "Added provider 'local'" in out.stdout
    config = nbllm.get_store().provider("local")
    assert config.url == LOCAL
    assert config.models["qwen2.5-coder:7b"].context_window == 32768
    assert config.models["meta-llama/Llama-3.1-8B-Instruct"].capabilities.tools

    listing = run(ip, "list").outputs[0].data
    assert "qwen2.5-coder:7b" in listing["text/plain"] and "32,768" in listing["text/plain"]
    assert "<table" in listing["text/html"] and "tools, json" in listing["text/html"]
    assert "not needed" in listing["text/plain"]

    detail = run(ip, "show local").outputs[0].data["text/plain"]
    assert f"{LOCAL}/chat/completions" in detail and "connect 10 s, read 120 s" in detail

    assert "Replaced provider 'local'" in run(ip, f"add local --url {LOCAL}").stdout
    run(ip, "remove local")
    assert nbllm.get_store().providers == {}


def test_default_and_model_subcommands(ip: Any) -> None:
    run(ip, f"add v --url {LOCAL} --model a --model b")
    run(ip, "model v add c/d:e=4096 --caps vision")
    assert nbllm.get_store().provider("v").models["c/d:e"].context_window == 4096
    run(ip, "model v set c/d:e --context 8192 --caps no-streaming,tools")
    caps = nbllm.get_store().provider("v").models["c/d:e"].capabilities
    assert caps.vision and caps.tools and not caps.streaming
    assert nbllm.get_store().provider("v").models["c/d:e"].context_window == 8192
    assert "v/c/d:e" in run(ip, "default c/d:e").stdout
    assert "\N{BLACK STAR}" in run(ip, "list").outputs[0].data["text/plain"]
    assert "v/c/d:e" in run(ip, "default").stdout
    run(ip, "model v remove c/d:e")
    assert "none" in run(ip, "default").stdout


def test_cell_form_yaml(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", SENTINEL_KEY)
    out = cell(
        ip,
        "",
        """
name: openrouter
url: https://openrouter.ai/api/v1
key: ${OPENROUTER_API_KEY}
headers: {X-Title: my notebook}
models:
  openai/gpt-4o: {context_window: 128000, caps: [tools, vision, json]}
  meta-llama/llama-3.1-8b-instruct: 131072
""",
    )
    assert "Added provider 'openrouter'" in out.stdout
    assert out.stderr == ""  # a ${VAR} key is a reference: no literal-key warning
    config = nbllm.get_store().provider("openrouter")
    assert config.key is None and config.key_env == "OPENROUTER_API_KEY"
    assert config.models["openai/gpt-4o"].capabilities.vision
    assert "from $OPENROUTER_API_KEY" in run(ip, "show openrouter").outputs[0].data["text/plain"]


def test_cell_form_name_on_line(ip: Any) -> None:
    cell(ip, "gw", "url: https://gw.example.com/v1\nmodels: [gpt-4o=128000]\n")
    assert nbllm.get_store().provider("gw").models["gpt-4o"].context_window == 128000


def test_literal_key_warns_and_is_never_shown(ip: Any) -> None:
    out = run(ip, f"add gw --url https://gw.example.com/v1 --key {SENTINEL_KEY} --model m")
    assert "saved in the notebook" in out.stderr
    shown = run(ip, "show gw").outputs[0].data["text/plain"] + run(ip, "list").outputs[0].data["text/plain"]
    assert "set" in shown and SENTINEL_KEY not in shown


def test_key_prompt(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt: SENTINEL_KEY)
    out = run(ip, "add gw --url https://gw.example.com/v1 --key-prompt")
    assert out.stderr == ""
    assert nbllm.get_store().provider("gw").key is not None
    assert SENTINEL_KEY not in out.stdout


def test_plain_http_key_warning(ip: Any) -> None:
    out = run(ip, f"add gpu --url http://gpu-box.lan:8000/v1 --key {SENTINEL_KEY}")
    assert "plain http" in out.stderr and SENTINEL_KEY not in out.stderr


def test_unset_key_env_warns(ip: Any) -> None:
    out = run(ip, "add gw --url https://gw.example.com/v1 --key-env NBLLM_TEST_NOT_SET")
    assert "$NBLLM_TEST_NOT_SET is not set" in out.stderr


def test_save_and_load(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run(ip, f"add gw --url https://gw.example.com/v1 --key {SENTINEL_KEY} --model m=100")
    saved = run(ip, "save")
    assert "left out of the file" in saved.stdout
    nbllm.get_store().clear()
    assert "gw" in run(ip, "load").stdout
    assert nbllm.get_store().provider("gw").models["m"].context_window == 100
    assert nbllm.get_store().provider("gw").key is None


def test_load_ext_loads_saved_providers(ip: Any) -> None:
    run(ip, f"add saved --url {LOCAL} --model m")
    run(ip, "save")
    nbllm.get_store().clear()
    with capture_output() as out:
        nbllm.load_ipython_extension(ip)
    assert "saved" in nbllm.get_store().providers
    assert "loaded 1 provider" in out.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "no subcommand given"),
        ("frobnicate", "unknown subcommand 'frobnicate'"),
        ("add x", "--url"),
        ("add x --url ftp://h", "only http:// and https://"),
        ("add x --url localhost:8000/v1", "has no scheme"),
        ("add x --url http://h/v1 --model m=big", "ID=TOKENS"),
        ("add x --url http://h/v1 --caps telepathy", "unknown capability"),
        ("add x --url https://r.openai.azure.com", "--api-version"),
        ("add x --url http://h/v1 --key-env A --key-prompt", "one key source"),
        ("add x/y --url http://h/v1", "no '/'"),
        ("add x --url http://h/v1 --header NoEquals", "NAME=VALUE"),
        ("add x --url http://h/v1 --rps 0", "requests_per_second"),
        ("show nope", "no provider named 'nope'"),
        ("remove nope", "no provider named 'nope'"),
        ("default nope", "unknown model 'nope'"),
        ("model nope add m", "no provider named 'nope'"),
        ("model x frob m", "invalid choice"),
        ("load /nonexistent/providers.yaml", "no config file"),
    ],
)
def test_bad_input_is_a_plain_usage_error(ip: Any, line: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("llm_provider", line)
    assert type(info.value) is UsageError
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("url: [", "not valid YAML"),
        ("- a list", "YAML mapping"),
        ("url: http://h/v1", "has no name"),
        ("name: x\nmodels: {m: 1}", "declares models but has no url"),
        ("name: x\nurl: http://h/v1\nmodels: {m: {context_window: 0}}", "models.m.context_window"),
    ],
)
def test_bad_yaml_cell(ip: Any, body: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("llm_provider", "", body)
    assert type(info.value) is UsageError and expected in str(info.value)
    assert nbllm.get_store().providers == {}


def test_run_cell_prints_no_traceback(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = ip.run_cell("%llm_provider add x --url ftp://h")
    assert isinstance(result.error_in_exec, UsageError)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_help_lists_every_subcommand(ip: Any) -> None:
    doc = ip.find_line_magic("llm_provider").__doc__
    for fragment in (
        "%llm_provider add",
        "--key-env",
        "%llm_provider model",
        "--context",
        "%llm_provider save",
        "%%llm_provider",
    ):
        assert fragment in doc


def test_cell_form_warns_about_literal_secrets(ip: Any) -> None:
    out = cell(
        ip, "gw", f"url: https://gw.example.com/v1\nkey: {SENTINEL_KEY}\nheaders: {{X-Api-Key: lit}}\n"
    )
    assert "key written in this cell" in out.stderr
    assert "header X-Api-Key holds a literal secret" in out.stderr
    assert SENTINEL_KEY not in out.stderr + out.stdout
