"""Thinking written inside the answer: ``<think>…</think>`` at the start of a reply's content,
as servers without a reasoning parser send it (llama.cpp with ``--reasoning-format none``,
many gateways). `ThinkTags` splits it off as the text streams, whatever bytes the tags are
split across; a ``<think>`` anywhere but at the start is the answer's own text and stays."""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def _held_back(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag` (0 to len-1)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkTags:
    """Feed content as it arrives; each `feed` returns (thinking, answer) for what can be told
    apart so far, holding back only what might still turn out to be a tag. `close` returns what
    is held at the end of the reply. Once `done`, every later piece is answer: the caller can
    stop feeding and pass content straight through."""

    def __init__(self) -> None:
        self._mode = "start"
        """start: no text seen yet (or only spaces, or a prefix of <think>); thinking: inside
        the tags; after: the tags closed, blank lines before the answer are dropped; done."""
        self._held = ""
        self._blank: list[str] = []
        """In start mode: the blank pieces before the first other character (kept as a list:
        joining them again on every piece made 40,000 blank events quadratic)."""
        self._opening = ""
        """In start mode: the text from the first non-blank character on (a tag, or not)."""
        self._thought = False
        """Whether any thinking but blank space has come out (the blank space is dropped)."""

    @property
    def done(self) -> bool:
        return self._mode == "done"

    def feed(self, text: str) -> tuple[str, str]:
        if self._mode == "done":
            return "", text
        if self._mode == "start":
            if not self._opening:
                stripped = text.lstrip()
                self._blank.append(text[: len(text) - len(stripped)])
                text = stripped
            opening = self._opening = self._opening + text
            if not opening or (len(opening) < len(OPEN_TAG) and OPEN_TAG.startswith(opening)):
                return "", ""  # blank so far, or a tag that is not whole yet
            if not opening.startswith(OPEN_TAG):
                answer, self._mode = self._start_text(), "done"
                return "", answer
            self._mode, self._blank, self._opening = "thinking", [], ""
            text = opening[len(OPEN_TAG) :]
        if self._mode == "thinking":
            text = self._held + text
            end = text.find(CLOSE_TAG)
            if end < 0:
                keep = _held_back(text, CLOSE_TAG)
                self._held = text[len(text) - keep :] if keep else ""
                return self._thinking(text[: len(text) - keep]), ""
            thinking, text = text[:end], text[end + len(CLOSE_TAG) :]
            self._mode, self._held = "after", ""
            return self._thinking(thinking), self._after(text)
        return "", self._after(text)

    def _start_text(self) -> str:
        """Everything held in start mode, as it came; forgotten."""
        text = "".join(self._blank) + self._opening
        self._blank, self._opening = [], ""
        return text

    def _thinking(self, text: str) -> str:
        if not self._thought:
            text = text.lstrip()
            self._thought = bool(text)
        return text

    def _after(self, text: str) -> str:
        answer = text.lstrip()
        if answer:
            self._mode = "done"
        return answer

    def close(self) -> tuple[str, str]:
        """What is held when the reply ends: an unclosed thought is thinking (the model ran out
        of tokens mid-thought); a lone prefix of the tag, or blank text, is the answer."""
        held, self._held = self._held, ""
        mode, self._mode = self._mode, "done"
        if mode == "thinking":
            return self._thinking(held), ""
        return "", self._start_text() if mode == "start" else ""
