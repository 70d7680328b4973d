"""%llm_mcp's commands and what an MCP result becomes for the model (issue 31); the real
servers run in tests/test_kernel_mcp.py."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError

from nbllm._cells.mcp_servers import result_output

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n not really a png").decode()


def test_a_result_becomes_text_and_its_images() -> None:
    result = SimpleNamespace(
        is_error=False,
        content=[
            SimpleNamespace(type="text", text="12:00"),
            SimpleNamespace(type="resource", resource=SimpleNamespace(text="file body", uri="file:///a")),
            SimpleNamespace(type="image", mime_type="image/png", data=PNG),
            SimpleNamespace(type="image", mime_type="image/png", data="%%% not base64"),
        ],
    )
    output = result_output(result)
    assert (
        output.text
        == "12:00\nfile body\n[image 1 (image/png)]\n[an image (image/png) that was not valid base64]"
    )
    assert [image.mime for image in output.images] == ["image/png"]
    assert output.images[0].data.startswith(b"\x89PNG")
    failed = result_output(SimpleNamespace(is_error=True, content=[SimpleNamespace(type="text", text="no")]))
    assert failed.text == "error: no" and failed.images == ()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("", "say what to do"),
        ("add", "give the server a name"),
        ("add web --url ftp://x", "--url needs an http(s) URL"),
        ("add web --token abc -- cmd", "does not take '--token'"),
        ("add bad/name -- cmd", "only letters, digits"),
        ("add nothing", "needs a command"),
        ("add web --url http://h --header Authorization=Bearer sk-live-9", "quote a header value"),
        ("add local --header A=b -- cmd", "--header is for servers reached by URL"),
        ("add web --url http://h --header", "--header needs a value"),
        ("tools ghost", "no MCP server named 'ghost'"),
        ("frobnicate", "unknown %llm_mcp command"),
    ],
)
def test_bad_commands_say_what_to_type(ip: Any, line: str, words: str) -> None:
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ip.run_line_magic("llm_mcp", line)


def test_add_list_and_remove_without_starting_anything(ip: Any, capsys: Any) -> None:
    ip.run_line_magic("llm_mcp", "add later -- some-server --flag")
    ip.run_line_magic("llm_mcp", "list")
    assert "later: some-server --flag [not started]" in capsys.readouterr().out
    with pytest.raises(UsageError, match="exists"):
        ip.run_line_magic("llm_mcp", "add later -- other")
    ip.run_line_magic("llm_mcp", "remove later")
    ip.run_line_magic("llm_mcp", "list")
    assert "No MCP servers" in capsys.readouterr().out
