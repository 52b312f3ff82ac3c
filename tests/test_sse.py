"""The SSE decoder at every byte boundary, with every line ending."""

from __future__ import annotations

import pytest

from feathergate.sse import SSEDecoder, SSEEvent, encode_data

STREAM = (
    b": a comment\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n'
    b"\n"
    b"event: ping\n"
    b"data: {}\n"
    b"\n"
    b"data: line one\n"
    b"data: line two\n"
    b"id: 7\n"
    b"\n"
    b"data:no-space\n"
    b"\n"
    b"event: lonely\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("{}", "ping"),
    SSEEvent("line one\nline two", "message", "7"),
    SSEEvent("no-space", "message", "7"),
    SSEEvent("[DONE]", "message", "7"),
]


def decode_in_pieces(data: bytes, cut: int) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.finish()


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_split_of_every_line_ending_decodes_the_same(ending: bytes) -> None:
    data = STREAM.replace(b"\n", ending)
    for cut in range(len(data) + 1):
        assert decode_in_pieces(data, cut) == EXPECTED, cut


def test_byte_at_a_time() -> None:
    decoder = SSEDecoder()
    events = [e for i in range(len(STREAM)) for e in decoder.feed(STREAM[i : i + 1])]
    assert events == EXPECTED


def test_finish_flushes_an_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x": 1}') == []
    assert decoder.finish() == [SSEEvent('{"x": 1}')]
    assert decoder.finish() == []


def test_utf8_split_inside_a_character() -> None:
    data = "data: héllo ✓\n\n".encode()
    for cut in range(len(data) + 1):
        assert decode_in_pieces(data, cut) == [SSEEvent("héllo ✓")]


def test_encode_data_is_one_compact_event() -> None:
    assert encode_data({"a": [1, 2]}) == b'data: {"a":[1,2]}\n\n'
