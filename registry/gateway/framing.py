"""Relaying an upstream's server-sent-events answer to one request, whole events at a time.

A Streamable HTTP upstream answers a request with an SSE stream: maybe notifications and
server→client requests, then the response (a message without ``method`` whose ``id`` is the
request's). ``AnswerFramer`` sits between the upstream's chunks and the client:

- it releases bytes only up to the last complete event (a blank line ends an event; CRLF, LF
  and a lone CR all end lines). What follows is held until its event completes, so a stream
  cut mid-event never hands the client half an event;
- it checks every complete ``message`` event: its data must be a JSON-RPC 2.0 object, else
  ``InvalidEventError``. Events without data (comments, keep-alives, the priming event of a
  resumable stream) pass unchecked;
- it notes whether the response arrived (``answered``) and whether the upstream announced
  ``notifications/tools/list_changed``.

Events larger than ``hold_limit`` are not held whole (large results stream, they are never
buffered whole): once an unfinished event passes the limit, its bytes are released as they
arrive. Such an event is checked only by its first byte (``{``) and counts as the answer when
it completes; if the stream breaks inside it, the client has already received part of it
(``mid_event``).

The framer only finds where events end; their lines and fields are read by the gateway's one
SSE parser (``registry.gateway.sse``), which is handed complete event blocks. Held bytes are
kept as a list of chunks and never rescanned (they hold no blank line, so only the last byte
held and the new chunk can complete one): a large event arriving in small chunks costs time
linear in its size, with one join when it completes. Each complete event's data is parsed once
with ``json.loads`` (a few microseconds for a typical answer).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from registry.gateway.jsonrpc import id_key, is_jsonrpc, response_key
from registry.gateway.sse import MESSAGE, SseParser, event_head

HOLD_LIMIT = 1024 * 1024
"""Bytes of one unfinished event held back before it is streamed as it arrives."""
LIST_CHANGED = "notifications/tools/list_changed"
# json.loads on bytes first sniffs the encoding; SSE is UTF-8 by definition.
_decode = json.JSONDecoder().decode
# A blank line is two line ends in a row: LF LF, LF CR or CR CR (then maybe LF: CR LF is one
# line end). Enough bytes held before a chunk to find a blank line split across the two:
_TAIL_BYTES = 1
_CR = 13
# The parser is handed complete events only; the framer bounds what it holds itself.
_UNBOUNDED = sys.maxsize


class InvalidEventError(ValueError):
    """An event's data is not a JSON-RPC 2.0 message."""


class AnswerFramer:
    """Feed it the upstream's chunks; ``feed`` returns what may be sent to the client now."""

    __slots__ = (
        "_held",
        "_held_size",
        "_limit",
        "_parser",
        "_request",
        "_streaming",
        "_tail",
        "answered",
        "list_changed",
    )

    def __init__(self, request_id: Any, *, hold_limit: int = HOLD_LIMIT) -> None:
        self._request = id_key(request_id)
        self._limit = hold_limit
        self._held: list[bytes] = []
        """The unfinished event's chunks so far (no blank line among them)."""
        self._held_size = 0
        self._parser = SseParser(max_event_bytes=_UNBOUNDED)
        self._streaming = False
        self._tail = b""
        self.answered = False
        """The response to the request (or, see the module doc, an oversized event) arrived."""
        self.list_changed = False
        """The upstream sent ``notifications/tools/list_changed`` (the caller resets it)."""

    @property
    def mid_event(self) -> bool:
        """Part of an unfinished event has been released (an event over the hold limit)."""
        return self._streaming

    @property
    def holding(self) -> bool:
        """Bytes of an unfinished event are held back."""
        return bool(self._held)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that may go to the client now; InvalidEventError for a bad event."""
        if self._streaming:
            window = self._tail + chunk
            end = _first_boundary(window)
            if end < 0:
                self._tail = window[-_TAIL_BYTES:]
                return chunk
            end -= len(self._tail)
            self._streaming = False
            self._tail = b""
            self.answered = True
            return chunk[:end] + self._frame(chunk[end:])
        return self._frame(chunk)

    def _frame(self, chunk: bytes) -> bytes:
        held = self._held
        if not held:
            cut = _last_boundary(chunk)
            if cut == len(chunk):
                # The common case: the chunk is whole events.
                self._check(chunk)
                return chunk
            if cut < 0 and chunk[:1] == b"\n":
                # Between events a LF ends nothing: the second half of a CRLF whose CR ended
                # the last chunk (and a blank line), or an empty line. Not held, or it would
                # wait for the next event.
                cut = 1
            data = chunk
        elif not chunk:
            return b""  # held parts are never empty: the tail is in the last one
        else:
            tail = held[-1][-_TAIL_BYTES:]
            cut = _last_boundary(tail + chunk)
            if cut >= 0:
                cut += self._held_size - len(tail)
            size = self._held_size + len(chunk)
            held.append(chunk)
            if cut < 0 and size <= self._limit:
                self._held_size = size
                return b""
            data = b"".join(held)
            held.clear()
            self._held_size = 0
        if cut < 0:
            complete, rest = b"", data
        else:
            complete, rest = data[:cut], data[cut:]
            self._check(complete)
        if len(rest) > self._limit:
            self._check_head(rest)
            self._streaming = True
            self._tail = rest[-_TAIL_BYTES:]
            # The parser never sees the streamed event: start afresh after it.
            self._parser = SseParser(max_event_bytes=_UNBOUNDED)
            return complete + rest
        if rest:
            held.append(rest)
            self._held_size = len(rest)
        return complete

    def _check(self, block: bytes) -> None:
        for name, data in self._parser.feed(block):
            if name == MESSAGE:
                self._message(data)

    def _message(self, data: bytes) -> None:
        if not data.strip():
            return
        try:
            message = _decode(data.decode("utf-8"))
        except ValueError as exc:
            raise InvalidEventError("event data is not JSON") from exc
        if not is_jsonrpc(message):
            raise InvalidEventError("event data is not a JSON-RPC 2.0 message")
        if response_key(message) == self._request:
            self.answered = True
        elif message.get("method") == LIST_CHANGED:
            self.list_changed = True

    def _check_head(self, partial: bytes) -> None:
        """An oversized event about to be streamed: its data must at least start a JSON object."""
        name, data = event_head(partial)
        if name == MESSAGE and data is not None and not data.lstrip().startswith(b"{"):
            raise InvalidEventError("event data is not a JSON-RPC 2.0 message")


def _last_boundary(data: bytes) -> int:
    """The offset just past the last blank line in ``data``, or -1."""
    end = data.rfind(b"\n\n") + 2
    cr = max(data.rfind(b"\n\r"), data.rfind(b"\r\r")) + 2
    if cr > end:
        # That blank line's CR may be the first half of a CRLF.
        end = cr + 1 if data[cr : cr + 1] == b"\n" else cr
    return end if end > 1 else -1


def _first_boundary(data: bytes) -> int:
    """The offset just past the first blank line in ``data``, or -1."""
    found = [index for marker in (b"\n\n", b"\n\r", b"\r\r") if (index := data.find(marker)) >= 0]
    if not found:
        return -1
    start = min(found)
    end = start + 2
    if data[start + 1] == _CR and data[end : end + 1] == b"\n":
        end += 1
    return end
