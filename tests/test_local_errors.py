"""The local model's refusals, without the local extra's server."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm._providers import local as local_module


def test_missing_extra_names_the_install_command(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "extra_installed", lambda: False)
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("llm_provider", "local start")
    assert "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" python -m pip install 'nbllm[local]'" in str(caught.value)


def test_chat_without_providers_or_extra_explains_both_ways(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "extra_installed", lambda: False)
    with pytest.raises(UsageError) as caught:
        ip.run_cell_magic("chat", "", "hello")
    message = str(caught.value)
    assert "%llm_provider add NAME --url URL" in message and "nbllm[local]" in message


def test_a_users_own_local_provider_is_not_replaced(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "extra_installed", lambda: True)
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(name="local", url="http://127.0.0.1:11434/v1", models=["m"])
    )
    with pytest.raises(UsageError, match="already registered"):
        ip.run_line_magic("llm_provider", "local start")
    assert nbllm.get_store().providers["local"].url == "http://127.0.0.1:11434/v1"


def test_status_when_not_running(ip: Any, capsys: Any) -> None:
    ip.run_line_magic("llm_provider", "local status")
    assert "not running" in capsys.readouterr().out


def test_bad_model_path_and_context(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "extra_installed", lambda: True)
    with pytest.raises(nbllm.NbllmError, match="no model file"):
        local_module.get_local_model().start(tmp_path / "missing.gguf")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    with pytest.raises(nbllm.NbllmError, match="too small"):
        local_module.get_local_model().start(model, 16)


def test_the_name_clash_is_named_before_a_missing_extra(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "extra_installed", lambda: False)
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(name="local", url="http://127.0.0.1:11434/v1", models=["m"])
    )
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("llm_provider", "local start")
    assert "a provider named 'local' is already registered" in str(caught.value)
    assert "nbllm[local]" not in str(caught.value)
    assert nbllm.get_store().providers["local"].url == "http://127.0.0.1:11434/v1"
