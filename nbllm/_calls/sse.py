"""A pure, incremental server-sent-events decoder: bytes in, events out.

It follows the WHATWG algorithm
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in CRLF, LF or CR; a line starting with ``:`` is a comment; ``data``
lines accumulate, joined by LF; an empty line dispatches the event; a field
without a colon has an empty value; one space after the colon is dropped. Input
may be split anywhere, even inside a CRLF pair or a UTF-8 sequence. No I/O here.
"""

from __future__ import annotations

import codecs
from typing import NamedTuple


class ServerSentEvent(NamedTuple):
    """One dispatched event. A named tuple: one is made per token, so it must be cheap."""

    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class SSEDecoder:
    """Feed it byte chunks with `feed`; call `close` at end of stream."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # text not yet ended by a line break
        self._after_cr = False  # the last chunk ended in CR: a leading LF belongs to it
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._consume(self._text.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream. Per the spec an event not ended by a blank line is discarded."""
        self._consume(self._text.decode(b"", final=True))
        self._pending = ""
        self._data, self._event = [], ""
        return []

    def _consume(self, text: str) -> list[ServerSentEvent]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        buffer = self._pending + text if self._pending else text
        if "\r" in buffer:
            lines = self._split_any_line_end(buffer)
        else:  # the common case (LF only): one C-level split
            lines = buffer.split("\n")
            self._pending = lines.pop()
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            # The two lines of nearly every event, "data: ..." and "", handled inline: this
            # runs once per token.
            if not line:
                if data:
                    events.append(
                        ServerSentEvent(
                            "\n".join(data), self._event or "message", self._last_id, self._retry_ms
                        )
                    )
                    data.clear()
                self._event = ""
            elif line.startswith("data: "):
                data.append(line[6:])
            else:
                self._line(line)
        return events

    def _split_any_line_end(self, buffer: str) -> list[str]:
        """Complete lines ended by CR, LF or CRLF; the rest waits in `_pending`. A CR at the very
        end may be the first half of a CRLF split across chunks (`_after_cr`)."""
        lines = []
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            end = lf if cr == -1 else cr if lf == -1 else min(cr, lf)
            lines.append(buffer[start:end])
            if buffer[end] == "\r":
                if end + 1 < length:
                    start = end + 2 if buffer[end + 1] == "\n" else end + 1
                else:
                    start, self._after_cr = end + 1, True
            else:
                start = end + 1
        self._pending = buffer[start:]
        return lines

    def _line(self, line: str) -> None:
        if line.startswith(":"):
            return
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry_ms = int(value)
