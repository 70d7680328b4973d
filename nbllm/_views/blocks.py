"""Where a streaming Markdown reply may be cut: the finished blocks before the cut are drawn once
and never again, only the open tail after it is redrawn (see `LiveView`).

A clean cut is at the start of a line that follows a blank line, outside any fenced code, and is
not indented (an indented line after a blank one may continue a list item, or be code). How long
a tail may grow before it is frozen follows how fast text arrives (`freeze_size`); one that grows
to twice that without a clean cut is cut anyway, at the best place it has: inside a fenced block
at a line start (the frozen part gets a closing fence, the tail reopens it with the same info
string), inside a table at a row (the tail repeats the header rows), else at a line break, else
at a space. Such cuts show as two blocks while the reply streams; the final frame is the whole
reply in one piece.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FREEZE_CHARS = 1_500
"""A tail this long is frozen at its last clean cut: the redrawn part stays small."""
FORCE_CHARS = 3_000
"""A tail this long is cut even without a clean cut."""
UPDATES_PER_FREEZE = 4
"""How many updates' worth of new text a tail may hold before it is frozen: each character is
then resent about this many times, whatever the rate (see `freeze_size`)."""
MAX_FREEZE_CHARS = 8_000


def freeze_size(chars_per_update: float) -> int:
    """The tail length at which to freeze, for text arriving at `chars_per_update`: small when
    text arrives slowly (bytes resent stay a small multiple of the reply), larger when it arrives
    fast (fewer outputs)."""
    return int(min(MAX_FREEZE_CHARS, max(FREEZE_CHARS, UPDATES_PER_FREEZE * chars_per_update)))


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


@dataclass(frozen=True)
class Cut:
    """Freeze ``text[:at]`` (plus `closing`, to end an open fence); the tail is `reopen` (the
    fence's opening line, or a table's header rows) followed by ``text[at:]``."""

    at: int
    closing: str = ""
    reopen: str = ""

    def frozen(self, text: str) -> str:
        return text[: self.at].rstrip("\n") + self.closing

    def tail(self, text: str) -> str:
        return self.reopen + text[self.at :]


def find_cut(text: str, freeze_chars: int = FREEZE_CHARS) -> Cut | None:
    """Where to cut `text` (a tail that starts outside any fence), or None to leave it whole;
    past twice `freeze_chars`, a cut is forced."""
    force_chars = 2 * freeze_chars
    if len(text) < freeze_chars:
        return None
    clean, fence_cut, table_cut, line_cut = _scan(text)
    if clean:
        return Cut(clean)
    if len(text) < force_chars:
        return None
    for cut in (fence_cut, table_cut):
        if cut is not None:
            return cut
    if line_cut:
        return Cut(line_cut)
    space = text.rfind(" ", 0, len(text) - 1)
    return Cut(space + 1) if space > 0 else Cut(len(text))


def _scan(text: str) -> tuple[int, Cut | None, Cut | None, int]:
    """The last clean cut, fence cut, table cut and line cut in `text` (0 or None: none)."""
    clean = line_cut = 0
    fence_cut: Cut | None = None
    table_cut: Cut | None = None
    fence: tuple[str, str, int] | None = None  # (its marker, its opening line, where it opens)
    header: str | None = None  # the current table's header and delimiter rows
    previous_blank = False
    previous = ""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        complete = end != -1
        line = text[start:] if not complete else text[start:end]
        opened = _FENCE.match(line)
        if fence is not None:
            marker, opening, opened_at = fence
            closes = (
                opened is not None
                and opened.group(1)[0] == marker[0]
                and len(opened.group(1)) >= len(marker)
                and not opened.group(2).strip()
            )
            if closes:
                fence = None
            elif start > opened_at:
                fence_cut = Cut(start, "\n" + marker, opening + "\n")
        else:
            if previous_blank and line and not line[0].isspace() and start > 0:
                clean = start
            elif start > 0 and line and not line[0].isspace():
                line_cut = start
            if opened:
                fence = (opened.group(1), line, start)
            if line.lstrip().startswith("|"):
                if header is None and _TABLE_DELIMITER.match(line) and previous.lstrip().startswith("|"):
                    header = previous + "\n" + line + "\n"
                elif header is not None and start > 0:
                    table_cut = Cut(start, "", header)
            else:
                header = None
        previous_blank = not line.strip()
        previous = line
        if not complete:
            break
        start = end + 1
    # A fence or table cut only helps while that fence or table is still open at the end.
    return clean, fence_cut if fence else None, table_cut if header else None, line_cut
