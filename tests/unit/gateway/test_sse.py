"""``SseParser``: the gateway's one server-sent-events parser, on every line end the spec allows."""

from __future__ import annotations

import json

import pytest

from registry.gateway.framing import AnswerFramer
from registry.gateway.jsonrpc import id_key, response_key
from registry.gateway.sse import EventTooLargeError, SseParser, event_head

NEWLINES = [b"\n", b"\r\n", b"\r"]


def stream(newline: bytes) -> bytes:
    lines = [
        b"event: endpoint",
        b"data: /messages?s=1",
        b"",
        b": keep-alive",
        b"",
        b"id: 7",
        b"data:",
        b"",
        b"event: message",
        b'data: {"jsonrpc":"2.0",',
        b'data:"id":2,"result":{}}',
        b"",
        b"event:",
        b"data: x",
        b"",
    ]
    return newline.join(lines) + newline


EXPECTED = [
    ("endpoint", b"/messages?s=1"),
    ("message", b""),
    ("message", b'{"jsonrpc":"2.0",\n"id":2,"result":{}}'),
    ("message", b"x"),
]


def feed_all(parser: SseParser, chunks: list[bytes]) -> list[tuple[str, bytes]]:
    return [event for chunk in chunks for event in parser.feed(chunk)]


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CRLF", "CR"])
def test_feed_whole_stream_on_each_line_end(newline: bytes) -> None:
    assert SseParser().feed(stream(newline)) == EXPECTED


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CRLF", "CR"])
def test_feed_split_at_every_offset(newline: bytes) -> None:
    """Review: a lone CR did not end a line here (the framer's parser said it did), so a CR-only
    upstream's ``tools/list`` answer never completed. A CRLF split between chunks is one line
    end, not a line end and a blank line."""
    data = stream(newline)

    for cut in range(len(data) + 1):
        assert feed_all(SseParser(), [data[:cut], data[cut:]]) == EXPECTED, cut
    assert feed_all(SseParser(), [data[i : i + 1] for i in range(len(data))]) == EXPECTED


def test_feed_mixed_line_ends() -> None:
    # LF, then a lone CR: a blank line. CR, then CRLF: a blank line.
    data = b"data: a\n\rdata: b\r\r\ndata: c\r\n\r\n"

    assert SseParser().feed(data) == [("message", b"a"), ("message", b"b"), ("message", b"c")]


def test_feed_event_without_blank_line_is_not_dispatched() -> None:
    parser = SseParser()

    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\r") == [("message", b"a")]


def test_feed_limits_a_line_held_in_parts() -> None:
    parser = SseParser(max_event_bytes=16)
    parser.feed(b"data: 01234")
    parser.feed(b"56789")

    with pytest.raises(EventTooLargeError):
        parser.feed(b"a")


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CRLF", "CR"])
def test_event_head_reads_the_first_data_line(newline: bytes) -> None:
    partial = newline + b"event: message" + newline + b"id: 1" + newline + b'data: {"json'

    assert event_head(partial) == ("message", b'{"json')
    assert event_head(b"event: ping" + newline) == ("ping", None)


def test_response_key_only_for_a_response() -> None:
    assert response_key({"jsonrpc": "2.0", "id": 2, "result": {}}) == id_key(2)
    assert response_key({"jsonrpc": "2.0", "id": "2", "error": {}}) == id_key("2")
    assert response_key({"jsonrpc": "2.0", "id": 2, "method": "sampling/createMessage"}) is None
    assert response_key({"jsonrpc": "2.0", "method": "notifications/progress"}) is None
    assert response_key({"jsonrpc": "2.0", "result": {}}) is None


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CRLF", "CR"])
def test_framer_and_parser_agree_on_every_split(newline: bytes) -> None:
    """The relay's two paths (``tools/call`` through the framer, ``tools/list`` through the
    parser) must see the same events: they disagreed on a lone CR."""
    note = b'data: {"jsonrpc":"2.0","method":"notifications/progress"}' + newline * 2
    answer = b"event: message" + newline + b'data: {"jsonrpc":"2.0","id":2,"result":{}}'
    data = note + answer + newline * 2

    for cut in range(len(data) + 1):
        framer = AnswerFramer(2)
        released = framer.feed(data[:cut]) + framer.feed(data[cut:])
        events = feed_all(SseParser(), [data[:cut], data[cut:]])

        assert released == data
        assert framer.answered, cut
        assert not framer.holding
        assert [response_key(json.loads(body)) for _, body in events] == [None, id_key(2)]
    framer = AnswerFramer(2)
    assert b"".join(framer.feed(data[i : i + 1]) for i in range(len(data))) == data
    assert framer.answered


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CRLF", "CR"])
def test_framer_streams_an_oversized_event_to_its_end(newline: bytes) -> None:
    big = b'data: {"jsonrpc":"2.0","id":2,"result":"' + b"y" * 40 + b'"}' + newline * 2
    note = b'data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}' + newline * 2
    framer = AnswerFramer(2, hold_limit=16)

    released = [framer.feed(part) for part in (big[:30], big[30:-1], big[-1:] + note)]

    assert b"".join(released) == big + note
    assert framer.answered
    assert framer.list_changed
    assert not framer.mid_event
