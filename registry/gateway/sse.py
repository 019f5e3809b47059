"""The gateway's one server-sent-events parser (the parts of the format MCP uses).

Lines end with CRLF, LF or a lone CR (WHATWG HTML, "Parsing an event stream"); a blank line
ends an event. A CR at the very end of a chunk may be the first half of a CRLF: a LF starting
the next chunk is then not a second line end. ``data`` lines are joined with ``\\n``, one space
after the colon is dropped, comments (``:``) and fields the gateway does not use (``id``,
``retry``) are ignored, and an event without ``data`` is not dispatched.

``SseParser`` is incremental: the bridge to a legacy SSE upstream feeds it raw chunks, and
``framing.AnswerFramer`` feeds it complete event blocks. An unfinished line is held as a list
of parts and joined once, when it ends, so a long line arriving in small chunks costs time
linear in its length.
"""

from __future__ import annotations

MAX_EVENT_BYTES = 16 * 1024 * 1024
MESSAGE = "message"
_LF = 10
_CR = 13


class EventTooLargeError(ValueError):
    pass


def split_field(line: bytes) -> tuple[bytes, bytes]:
    """A non-empty line's field name and value (``b""`` for a comment's name)."""
    name, _, value = line.partition(b":")
    return name, value[1:] if value[:1] == b" " else value


class SseParser:
    """Feed it bytes as they arrive; it returns the complete ``(event, data)`` pairs."""

    __slots__ = ("_after_cr", "_data", "_event", "_line", "_line_size", "_max", "_size")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._line: list[bytes] = []
        """Parts of the unfinished last line (they hold no line end)."""
        self._line_size = 0
        self._after_cr = False
        """The last chunk ended with CR: a LF opening the next one completes a CRLF."""
        self._event = MESSAGE
        self._data: list[bytes] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        last = chunk[-1]
        if last in (_LF, _CR):
            # The common case (the framer hands whole events): no unfinished line after it.
            lines = chunk
            self._after_cr = last == _CR
            rest = b""
        else:
            end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
            if end == 0:
                self._line.append(chunk)
                self._line_size += len(chunk)
                self._check_size()
                return []
            lines, rest = chunk[:end], chunk[end:]
        if self._line:
            self._line.append(lines)
            lines = b"".join(self._line)
            self._line = []
        if rest:
            self._line.append(rest)
        self._line_size = len(rest)
        events: list[tuple[str, bytes]] = []
        event, data, size = self._event, self._data, self._size
        # bytes.splitlines() splits at exactly CRLF, LF and CR: the SSE line ends.
        for line in lines.splitlines():
            if not line:
                if data:
                    events.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data, size = [], 0
                event = MESSAGE
                continue
            name, value = split_field(line)
            if name == b"data":
                data.append(value)
                size += len(value)
            elif name == b"event":
                event = _event_type(value)
        self._event, self._data, self._size = event, data, size
        if self._line_size + size > self._max:
            raise EventTooLargeError("server-sent event too large")
        return events

    def _check_size(self) -> None:
        if self._line_size + self._size > self._max:
            raise EventTooLargeError("server-sent event too large")


def event_head(partial: bytes) -> tuple[str, bytes | None]:
    """The type and the first ``data`` value (maybe cut short) of the unfinished event at the
    start of ``partial``; None when no ``data`` line has begun."""
    event = MESSAGE
    for line in partial.splitlines():
        if not line:
            event = MESSAGE
            continue
        name, value = split_field(line)
        if name == b"data":
            return event, value
        if name == b"event":
            event = _event_type(value)
    return event, None


def _event_type(value: bytes) -> str:
    # An empty type means the default one.
    return MESSAGE if value == b"message" or not value else value.decode("utf-8", "replace")
