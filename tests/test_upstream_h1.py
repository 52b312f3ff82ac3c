"""The upstream client's HTTP/1.1 framing, held to h11.

Every response goes through the same path the client takes (a ``HeadReader``
until the head, then ``BodyFraming`` until the connection ends) and through
h11 as a client; the client must either refuse it or read exactly h11's
status, header fields and body. The table is review §2.1, one row per
leniency the client used to have; the hypothesis tests generate valid
responses (which the client must read), mutate them, and cut them anywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feathergate.errors import InvalidUpstreamRequest, UpstreamProtocolError
from feathergate.upstream.h1 import (
    MAX_HEAD,
    MAX_TRAILERS,
    BodyFraming,
    HeadReader,
    encode_request,
    parse_head,
)


class Read(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def ours(pieces: list[bytes]) -> Read | None:
    """What the client reads from these reads, then the end of the connection; None: refused."""
    reader = HeadReader()
    try:
        rest = list(pieces)
        got = None
        while got is None and rest:
            got = reader.feed(rest.pop(0))
        if got is None:
            return None  # the client: "closed the connection before answering"
        head, leftover = got
        framing = BodyFraming(head)
        body = framing.feed(leftover) + b"".join(framing.feed(piece) for piece in rest)
        framing.eof()
    except UpstreamProtocolError:
        return None
    assert framing.done
    return Read(head.status, head.headers, body)


def h11_reads(pieces: list[bytes]) -> Read | None:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("host", "up"), ("content-length", "0")])
    )
    conn.send(h11.EndOfMessage())
    response: h11.Response | None = None
    body = bytearray()
    try:
        for piece in [*pieces, b""]:  # b"": the connection ends
            conn.receive_data(piece)
            while (event := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert response is not None
                    headers: dict[str, str] = {}
                    for name, value in response.headers:
                        key, text = name.decode("latin-1"), value.decode("latin-1")
                        headers[key] = f"{headers[key]}, {text}" if key in headers else text
                    return Read(response.status_code, headers, bytes(body))
                elif isinstance(event, h11.ConnectionClosed):
                    return None
    except h11.RemoteProtocolError:
        return None
    return None


def agrees(data: bytes, cuts: list[int] | None = None) -> Read | None:
    """Both parsers on ``data`` cut at ``cuts``: the client refuses, or reads what h11 reads."""
    edges = [0, *sorted(set(cuts or [])), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
    mine, theirs = ours(pieces), h11_reads(pieces)
    if mine is not None:
        assert mine == theirs, (data, pieces)
    return mine


def head(*fields: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return "\r\n".join([status, *fields, "", ""]).encode("latin-1")


CHUNKED = head("transfer-encoding: chunked")


# -- review §2.1, row by row ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(CHUNKED + b"-1\r\n\r\n", id="chunk size -1"),
        pytest.param(CHUNKED + b"-2\r\nab\r\n0\r\n\r\n", id="chunk size -2"),
        pytest.param(CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", id="chunk size 0x5"),
        pytest.param(CHUNKED + b"0_5\r\nhello\r\n0\r\n\r\n", id="chunk size 0_5"),
        pytest.param(CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", id="chunk size +5"),
        pytest.param(CHUNKED + b" 5 \r\nhello\r\n0\r\n\r\n", id="chunk size ' 5 '"),
        pytest.param(CHUNKED + b"5 ;x\r\nhello\r\n0\r\n\r\n", id="space before chunk-ext"),
        pytest.param(CHUNKED + b"5;\x00\r\nhello\r\n0\r\n\r\n", id="NUL in chunk-ext"),
        pytest.param(head("content-length: +5") + b"hello", id="content-length +5"),
        pytest.param(head("content-length: 0_5") + b"hello", id="content-length 0_5"),
        pytest.param(head("content-length: -1") + b"", id="content-length -1"),
        pytest.param(head("content-length: 5, 6") + b"hello", id="conflicting lengths"),
        pytest.param(head("content-length: 5", "content-length: 6") + b"hello", id="two lengths"),
        pytest.param(head("content-length: " + "9" * 21), id="content-length of 21 digits"),
        pytest.param(
            head("transfer-encoding: chunked", "content-length: 5") + b"5\r\nhello\r\n0\r\n\r\n",
            id="transfer-encoding with content-length",
        ),
        pytest.param(head("transfer-encoding: chunked, gzip") + b"0\r\n\r\n", id="chunked, gzip"),
        pytest.param(head("transfer-encoding: xchunked") + b"0\r\n\r\n", id="xchunked"),
        pytest.param(
            head("transfer-encoding: chunked", "transfer-encoding: chunked") + b"0\r\n\r\n",
            id="two transfer-encodings",
        ),
        pytest.param(
            head("transfer-encoding : chunked") + b"0\r\n\r\n", id="space before the colon"
        ),
        pytest.param(
            head("content-length: 5", " transfer-encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n",
            id="obs-fold",
        ),
        pytest.param(
            head("x-a: 1\nContent-Length: 2", "content-length: 5") + b"hello", id="bare LF"
        ),
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", id="bare LF everywhere"),
        pytest.param(head("x-a: 1\r2", "content-length: 5") + b"hello", id="bare CR"),
        pytest.param(head("content-length: 5", status="HTTP/1.1 -1 OK") + b"hello", id="status -1"),
        pytest.param(head("content-length: 5", status="HTTP/1.1 2_00 OK") + b"hello", id="2_00"),
        pytest.param(head("content-length: 0", status="HTTP/1.1 600 X"), id="status 600"),
        pytest.param(head("content-length: 0", status="HTTP/2.0 200 OK"), id="HTTP/2.0"),
        pytest.param(head("content-length: 0", status="HTTP/1.1  200 OK"), id="two spaces"),
        pytest.param(head("x-a: a\x00b", "content-length: 0"), id="NUL in a value"),
        pytest.param(head("x-a: a\x0bb", "content-length: 0"), id="VT in a value"),
        pytest.param(head("x\x00a: 1", "content-length: 0"), id="NUL in a name"),
        pytest.param(head(": 1", "content-length: 0"), id="empty name"),
        pytest.param(head("no-colon", "content-length: 0"), id="no colon"),
        pytest.param(
            head("transfer-encoding: chunked", status="HTTP/1.0 200 OK") + b"0\r\n\r\n",
            id="transfer-encoding on HTTP/1.0",
        ),
        pytest.param(head(status="HTTP/1.1 101 Switching Protocols") + b"", id="101"),
        pytest.param(CHUNKED + b"2\r\nokXX0\r\n\r\n", id="no CRLF after the data"),
        pytest.param(CHUNKED + b"2\r\nok\r\n0\r\nx : 1\r\n\r\n", id="malformed trailer"),
        pytest.param(CHUNKED + b"2\r\nok\r\n0\r\nx: 1\r\n y\r\n\r\n", id="folded trailer"),
        pytest.param(CHUNKED + b"0\r\ncontent-length: x\r\n\r\n", id="bad length in trailer"),
        pytest.param(head("content-length: 2") + b"okEXTRA", id="bytes after the body"),
        pytest.param(CHUNKED + b"0\r\n\r\nEXTRA", id="bytes after the last chunk"),
        pytest.param(head("content-length: 5") + b"hel", id="cut short"),
        pytest.param(CHUNKED + b"5\r\nhel", id="chunked cut short"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n", id="head cut short"),
    ],
)
def test_what_h11_refuses_or_reads_otherwise_is_refused(data: bytes) -> None:
    for cut in range(len(data) + 1):
        assert agrees(data, [cut]) is None, cut


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            head("Content-Length: 5", "content-length: 5") + b"hello",
            Read(200, {"content-length": "5"}, b"hello"),
            id="two identical lengths (RFC 9110 §8.6)",
        ),
        pytest.param(
            head("content-length: 5, 5") + b"hello",
            Read(200, {"content-length": "5"}, b"hello"),
            id="one listed twice",
        ),
        pytest.param(
            head("Transfer-Encoding: Chunked") + b"5;a=b;c\r\nhello\r\nA \r\n0123456789\r\n0\r\n"
            b"x-trailer: 1\r\n\r\n",
            Read(200, {"transfer-encoding": "chunked"}, b"hello0123456789"),
            id="chunk-ext, upper-case hex, trailing space, trailer",
        ),
        pytest.param(
            head("X-A:  a \t b\t", "x-a: 2", "x-e:", "content-length: 0", status="HTTP/1.1 429"),
            Read(429, {"x-a": "a \t b, 2", "x-e": "", "content-length": "0"}, b""),
            id="spaces around values, repeated names, no reason phrase",
        ),
        pytest.param(
            head(status="HTTP/1.1 100 Continue")
            + head("content-length: 2", status="HTTP/1.1 103 Early Hints")
            + head("content-length: 2")
            + b"ok",
            Read(200, {"content-length": "2"}, b"ok"),
            id="interim responses",
        ),
        pytest.param(
            head(status="HTTP/1.0 200 OK") + b"until the end",
            Read(200, {}, b"until the end"),
            id="close-delimited",
        ),
        pytest.param(
            head("content-length: 5", status="HTTP/1.1 204 No Content"),
            Read(204, {"content-length": "5"}, b""),
            id="204 has no body",
        ),
        pytest.param(
            head("x-obs: caf\xe9", "content-length: 0", status="HTTP/1.1 200 d\xe9j\xe0 vu"),
            Read(200, {"x-obs": "caf\xe9", "content-length": "0"}, b""),
            id="obs-text",
        ),
    ],
)
def test_what_both_read_is_read_the_same_at_every_split(data: bytes, expected: Read) -> None:
    for cut in range(len(data) + 1):
        assert agrees(data, [cut]) == expected, cut


def test_chunked_body_byte_at_a_time() -> None:
    data = CHUNKED + b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n"
    read = agrees(data, list(range(len(data))))
    assert read is not None
    assert read.body == b"Wikipedia in \r\n\r\nchunks."


def framing(head: bytes) -> BodyFraming:
    return BodyFraming(parse_head(head))


def test_content_length_and_close_delimited_bodies() -> None:
    body = framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5")
    assert body.feed(b"hel") == b"hel"
    assert not body.done
    assert body.feed(b"lo") == b"lo"
    assert body.done
    assert body.reusable
    with pytest.raises(UpstreamProtocolError):
        body.feed(b"!")
    short = framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5")
    short.feed(b"he")
    with pytest.raises(UpstreamProtocolError, match="mid-body"):
        short.eof()
    until_close = framing(b"HTTP/1.0 200 OK")
    assert until_close.feed(b"anything") == b"anything"
    until_close.eof()
    assert until_close.done
    assert not until_close.reusable


def test_heads_parse_and_malformed_ones_fail() -> None:
    head = parse_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nX-A: 1\r\nx-a: 2")
    assert (head.status, head.headers["retry-after"], head.headers["x-a"]) == (429, "7", "1, 2")
    assert head.keep_alive
    assert not parse_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive
    assert not parse_head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close").keep_alive
    assert parse_head(
        b"HTTP/1.1 200 OK\r\nConnection: closed"
    ).keep_alive  # a token, not a substring
    assert not parse_head(b"HTTP/1.0 200 OK").keep_alive
    for bad in (b"garbage", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno-colon"):
        with pytest.raises(UpstreamProtocolError):
            parse_head(bad)


# -- bounds, and time linear in the input ---------------------------------------------


def keep_feeding(feed: Callable[[bytes], object], data: bytes, times: int) -> None:
    for _ in range(times):
        feed(data)


def test_heads_and_trailers_are_bounded() -> None:
    with pytest.raises(UpstreamProtocolError, match="too large"):
        keep_feeding(HeadReader().feed, b"x-filler: " + b"a" * 990 + b"\r\n", MAX_HEAD // 1000 + 2)
    with pytest.raises(UpstreamProtocolError, match="too large"):  # interim heads count too
        keep_feeding(HeadReader().feed, b"HTTP/1.1 100 Go\r\n\r\n", MAX_HEAD // 19 + 2)
    trailers = BodyFraming(parse_head(CHUNKED[:-4]))
    trailers.feed(b"0\r\n")
    with pytest.raises(UpstreamProtocolError, match="trailer"):
        keep_feeding(trailers.feed, b"x" * 1000, MAX_TRAILERS // 1000 + 2)  # no CRLF, ever
    with pytest.raises(UpstreamProtocolError, match="chunk-size line"):
        keep_feeding(BodyFraming(parse_head(CHUNKED[:-4])).feed, b"1;" + b"e" * 1000, 10)


def test_a_read_of_many_tiny_chunks() -> None:
    # 256 KiB of 1-byte chunks in one read. The time this takes, linear in the
    # size now, is measured by scripts/bench_framing.py, not here.
    data = b"1\r\na\r\n" * 45_000
    framing = BodyFraming(parse_head(CHUNKED[:-4]))
    assert framing.feed(data + b"0\r\n\r\n") == b"a" * 45_000
    assert framing.done


def test_a_bare_lf_head_fails_at_once_instead_of_waiting() -> None:
    reader = HeadReader()
    with pytest.raises(UpstreamProtocolError, match="bare LF"):
        reader.feed(b"HTTP/1.1 200 OK\ncontent-length: 0\n")


# -- differential: generated, then mutated, responses ---------------------------------

TOKENS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-_!#$%&'*+.^`|~", min_size=1
)
NAMES = st.one_of(
    st.sampled_from(["content-type", "x-request-id", "Date", "retry-after", "set-cookie", "via"]),
    TOKENS,
)
VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=20,
).map(lambda text: text.strip(" "))
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=5).map(
    lambda fields: [(n, v) for n, v in fields if n.lower() not in FRAMING]
)
FRAMING = {"content-length", "transfer-encoding", "connection"}


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """A well-formed response, as an LLM upstream (or a proxy in front of one) sends it."""
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    status = draw(st.sampled_from([200, 200, 201, 204, 304, 400, 404, 429, 500, 503]))
    reason = draw(st.sampled_from(["", " OK", " Too Many Requests", " "]))
    fields = draw(FIELDS)
    body = b"" if status in (204, 304) else draw(st.binary(max_size=120))
    framing = draw(
        st.sampled_from(["length", "chunked", "close"] if version == "1.1" else ["length", "close"])
    )
    payload = body
    if framing == "length":
        name = draw(st.sampled_from(["content-length", "Content-Length"]))
        fields.append((name, str(len(body))))
        if draw(st.booleans()):
            fields.append(("content-length", f" {len(body)}"))
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked"]))))
        payload = draw(chunked(body))
    if status in (204, 304):
        payload = b""  # no body, whatever the fields say
    if draw(st.booleans()):
        fields.append(("Connection", draw(st.sampled_from(["keep-alive", "close", "x, Close"]))))
    fields = draw(st.permutations(fields))
    interim = draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2))
    heads = b"".join(
        head(*(f"{n}: {v}" for n, v in draw(FIELDS)), status=f"HTTP/1.1 {code} X")
        for code in interim
    )
    final = head(*(f"{n}: {v}" for n, v in fields), status=f"HTTP/{version} {status}{reason}")
    return heads + final + payload


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> bytes:
    out = []
    rest = body
    while rest:
        size = draw(st.integers(1, len(rest)))
        digits = f"{size:x}"
        digits = draw(st.sampled_from([digits, digits.upper(), "00" + digits]))
        ext = draw(st.sampled_from(["", ";a=b", ';name="quoted value"', ";"]))
        space = draw(st.sampled_from(["", " ", "\t"]))
        out.append(f"{digits}{ext}{space}\r\n".encode() + rest[:size] + b"\r\n")
        rest = rest[size:]
    trailers = "".join(f"{n}: {v}\r\n" for n, v in draw(FIELDS))
    out.append(f"0\r\n{trailers}\r\n".encode("latin-1"))
    return b"".join(out)


# Mutations aim where framing is decided: a line's start (obs-fold, a second
# length, a bare LF), the colon (space before it), a value's first character
# (``+5``, ``0x5``, ``-1``, ``5, 6``), above all in Content-Length and
# Transfer-Encoding, a chunk-size line's start, as well as anywhere at all.
ANYWHERE = [
    b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b"\x0b", b"-", b"+", b"0", b"x", b"_",
    b";", b",", b"F", b"\xff", b"\r\n\r\n", b"0\r\n\r\n", b"HTTP/1.1 200 OK\r\n",
]  # fmt: skip
LINE_START = [
    b" ", b"\t", b"\n", b"\r", b" x", b"transfer-encoding: chunked\r\n", b"content-length: 3\r\n",
    b"Content-Length: 0\r\n", b"transfer-encoding: xchunked\r\n", b"x-a: 1\n",
]  # fmt: skip
VALUE_START = [
    b"+", b"-", b"0x", b"_", b" ", b"\t", b",", b"5, ", b"0", b"1", b"\x00", b"\r", b"\n",
    b"chunked, ", b"x",
]  # fmt: skip


def positions(data: bytearray, marker: bytes, offset: int) -> list[int]:
    found, at = [], data.find(marker)
    while at >= 0:
        found.append(at + offset)
        at = data.find(marker, at + 1)
    return found


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(responses()))
    for _ in range(draw(st.integers(1, 3))):
        kinds = ["line", "colon", "value", "framing", "framing", "chunk", "insert", "replace"]
        kind = draw(st.sampled_from([*kinds, "delete"]))
        lower = data.lower()
        body = data.find(b"\r\n\r\n") + 4
        hot = {
            "line": positions(data, b"\r\n", 2),
            "colon": positions(data, b":", 0),
            "value": positions(data, b": ", 2),
            "framing": positions(lower, b"content-length: ", 16)
            + positions(lower, b"transfer-encoding: ", 19),
            "chunk": [at for at in positions(data, b"\r\n", 2) if at >= body],
        }.get(kind)
        at = draw(st.sampled_from(hot) if hot else st.integers(0, len(data)))
        if kind == "delete":
            del data[at : at + draw(st.integers(1, 4))]
            continue
        aimed = {
            "line": LINE_START,
            "colon": [b" ", b"\t"],
            "value": VALUE_START,
            "framing": VALUE_START,
            "chunk": [b" ", b"\t", b"+", b"-", b"0x", b"_", b";", b"x", b"\x00", b"\n"],
        }
        if kind in aimed:
            piece = draw(st.sampled_from(aimed[kind]))
        else:
            piece = draw(st.sampled_from(ANYWHERE) | st.binary(min_size=1, max_size=2))
        data[at : at + (len(piece) if kind == "replace" else 0)] = piece
    return bytes(data)


def cut_points(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=6)


@settings(max_examples=150, deadline=None, database=None)
@given(st.data())
def test_generated_responses_are_read_exactly_as_h11_reads_them(data: st.DataObject) -> None:
    response = data.draw(responses())
    read = agrees(response, data.draw(cut_points(response)))
    assert read is not None, response  # valid input: refusing it is not an option


@settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.data())
def test_mutated_responses_are_refused_or_read_as_h11_reads_them(data: st.DataObject) -> None:
    response = data.draw(mutated())
    agrees(response, data.draw(cut_points(response)))


# -- the request the client writes -----------------------------------------------------


def test_request_is_one_buffer_with_host_length_and_one_user_agent() -> None:
    data = encode_request("POST", "/v1/x?a=1", "h:8", [("x-k", "v"), ("Host", "evil")], b"{}")
    assert data == (
        b"POST /v1/x?a=1 HTTP/1.1\r\nhost: h:8\r\nx-k: v\r\nuser-agent: feathergate\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    mine = encode_request("POST", "/", "h", [("User-Agent", "mine/1.0")], b"")
    assert mine.lower().count(b"user-agent") == 1
    assert b"User-Agent: mine/1.0\r\n" in mine


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("authorization", "Bearer sk-secret\n"),  # a key read from a file, newline and all
        ("authorization", "Bearer sk-secret\r\nx-injected: 1"),
        ("x-a", "a\x00b"),
        ("x-a", "caf\u00e9 \u65e5\u672c"),  # beyond latin-1: was a UnicodeEncodeError
        ("x-a", " padded"),
        ("x-a", "bell\x07"),
        ("x a", "1"),
        ("x-a:", "1"),
        ("", "1"),
        ("x-\u00e9", "1"),
    ],
)
def test_a_header_http_cannot_carry_is_refused_without_showing_its_value(
    name: str, value: str
) -> None:
    with pytest.raises(InvalidUpstreamRequest) as caught:
        encode_request("POST", "/", "h", [(name, value)], b"")
    assert "secret" not in caught.value.message
    assert caught.value.http_status == 500


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding", "Connection", "upgrade"])
def test_framing_headers_are_the_clients_alone(name: str) -> None:
    with pytest.raises(InvalidUpstreamRequest, match="client's to write"):
        encode_request("POST", "/", "h", [(name, "0")], b"{}")


def test_a_request_line_http_cannot_carry_is_refused() -> None:
    for method, target in [("POST", "/a b"), ("POST", "/\u00e9"), ("PO ST", "/"), ("POST", "")]:
        with pytest.raises(InvalidUpstreamRequest):
            encode_request(method, target, "h", [], b"")
