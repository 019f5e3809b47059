"""An incremental server-sent-events parser (the parts of the format MCP uses)."""

from __future__ import annotations

MAX_EVENT_BYTES = 16 * 1024 * 1024


class EventTooLargeError(ValueError):
    pass


class SseParser:
    """Feed it bytes as they arrive; it returns the complete ``(event, data)`` pairs."""

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._event = "message"
        self._data: list[bytes] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        events: list[tuple[str, bytes]] = []
        buffer = self._buffer + chunk
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end].rstrip(b"\r")
            start = end + 1
            self._line(line, events)
        self._buffer = buffer[start:]
        if len(self._buffer) + self._size > self._max:
            raise EventTooLargeError("server-sent event too large")
        return events

    def _line(self, line: bytes, events: list[tuple[str, bytes]]) -> None:
        if not line:
            if self._data:
                events.append((self._event, b"\n".join(self._data)))
            self._event, self._data, self._size = "message", [], 0
            return
        if line.startswith(b":"):
            return
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"data":
            self._size += len(value)
            self._data.append(value)
