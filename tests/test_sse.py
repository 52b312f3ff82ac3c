"""The SSE decoder at every byte boundary, with every line ending, and its limit."""

from __future__ import annotations

import json

import pytest

from feathergate.errors import UpstreamProtocolError
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


def feed_all(decoder: SSEDecoder, *pieces: bytes) -> list[SSEEvent]:
    return [event for piece in pieces for event in decoder.feed(piece)]


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


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_a_leading_bom_is_stripped_at_every_split(ending: bytes) -> None:
    data = b"\xef\xbb\xbf" + STREAM.replace(b"\n", ending)
    for cut in range(len(data) + 1):
        assert decode_in_pieces(data, cut) == EXPECTED, cut


def test_only_one_bom_and_only_at_the_start() -> None:
    decoder = SSEDecoder()
    data = b"\xef\xbb\xbf\xef\xbb\xbfdata: lost\n\ndata: \xef\xbb\xbfkept\n\n"
    # The second BOM is part of the first field's name, which is then unknown.
    assert decoder.feed(data) + decoder.finish() == [SSEEvent("\ufeffkept")]


def test_a_stream_shorter_than_a_bom_ends_cleanly() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == []
    assert decoder.finish() == []


def test_an_id_with_nul_is_ignored() -> None:
    data = b"id: 7\ndata: a\n\nid: x\0y\ndata: b\n\n"
    for cut in range(len(data) + 1):
        assert decode_in_pieces(data, cut) == [SSEEvent("a", id="7"), SSEEvent("b", id="7")]


def test_an_event_up_to_the_limit_passes_at_every_split() -> None:
    data = b"data: 0123456789\ndata: 0123456789\n\n"  # two data lines of 16 bytes
    for cut in range(len(data) + 1):
        decoder = SSEDecoder(max_event_bytes=32)
        events = decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.finish()
        assert events == [SSEEvent("0123456789\n0123456789")], cut


@pytest.mark.parametrize(
    "data",
    [
        b"data: 0123456789\ndata: 01234567890\n\n",  # its data lines add up past the limit
        b"data: " + b"x" * 40 + b"\n\n",  # one line past it
        b": " + b"x" * 40,  # a comment that does not end is held too
    ],
)
def test_an_event_past_the_limit_is_an_upstream_protocol_error_at_every_split(
    data: bytes,
) -> None:
    for cut in range(len(data) + 1):
        decoder = SSEDecoder(max_event_bytes=32)
        with pytest.raises(UpstreamProtocolError, match="exceeded 32 bytes"):
            feed_all(decoder, data[:cut], data[cut:])


def test_a_line_that_never_ends_is_stopped_at_the_limit_read_by_read() -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    assert feed_all(decoder, b"data: ", *[b"x" * 100] * 10) == []  # 1006 bytes held
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"x" * 100)


def test_the_limit_counts_one_event_at_a_time() -> None:
    decoder = SSEDecoder(max_event_bytes=32)
    events = [e for _ in range(100) for e in decoder.feed(b"data: 0123456789\n\n")]
    assert len(events) == 100


def test_an_eight_megabyte_line_in_16_kib_reads_comes_out_whole() -> None:
    """The shape that was quadratic (scripts/sse_bench.py measures it); here, correctness."""
    payload = json.dumps({"inlineData": {"data": "A" * (8 * 1024 * 1024)}}).encode()
    data = b"data: " + payload + b"\r\n\r\n"
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(data), 16 * 1024):
        events += decoder.feed(data[i : i + 16 * 1024])
    assert events == [SSEEvent(payload.decode())]
    assert decoder.finish() == []
