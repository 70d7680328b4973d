"""A sentinel key never appears in any repr, str, listing, error message or saved file."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import nbllm
from nbllm import NbllmError, ProviderConfig
from nbllm._providers.paths import default_config_path
from tests.helpers import SENTINEL_KEY


def test_sentinel_never_leaks(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_ENVKEY", SENTINEL_KEY)
    formatter = ip.display_formatter
    monkeypatch.setattr(formatter, "active_types", ["text/plain", "text/html"])
    seen: list[str] = []

    def magic(line: str, body: str | None = None) -> None:
        with capture_output() as out:
            try:
                if body is None:
                    ip.run_line_magic("llm_provider", line)
                else:
                    ip.run_cell_magic("llm_provider", line, body)
            except UsageError as exc:
                seen.append(str(exc))
        seen.extend([out.stdout, out.stderr])
        seen.extend(str(v) for o in out.outputs for v in o.data.values())

    magic(
        f"add lit --url https://gw.example.com/v1 --key {SENTINEL_KEY} --model m "
        f"--header Authorization=Bearer_{SENTINEL_KEY}"
    )
    magic("add env --url http://gpu.lan:8000/v1 --key-env NBLLM_TEST_ENVKEY --model m")
    magic("gw2", f"url: https://gw2.example.com/v1\nkey: {SENTINEL_KEY}\nmodels: [m2]\n")
    magic("bad", f"url: https://gw3.example.com/v1\nkey: {SENTINEL_KEY}\nauth: basic\n")
    magic(f"add bad2 --url https://u:{SENTINEL_KEY}@h.example.com/v1")
    magic(f"add bad3 --url https://h.example.com/v1 --key-env {SENTINEL_KEY}")
    magic(f"add bad4 --url http://h/v1 --header {SENTINEL_KEY}")
    for line in ("list", "show lit", "show env", "show gw2", "save", "load", "default m"):
        magic(line)

    store = nbllm.get_store()
    for config in store.providers.values():
        seen += [repr(config), str(config), config.model_dump_json(), str(config.saved_form())]
    seen.append(default_config_path().read_text())
    for bad in ({"key": 42}, {"key": SENTINEL_KEY, "url": "ftp://x"}, {"key": SENTINEL_KEY, "auth": "x"}):
        with pytest.raises(NbllmError) as info:
            ProviderConfig(**{"name": "p", "url": "http://h/v1", **bad})
        seen.append(str(info.value))

    assert len(seen) > 30
    leaks = [text for text in seen if SENTINEL_KEY in text]
    assert leaks == [], "\n---\n".join(leaks)
