"""HTTP/1.1 client framing (RFC 9112), pure: bytes in, bytes and facts out.

Only what talking to an LLM API needs: one request head written with its
body in a single buffer; a response head parsed once; a body framed by
``content-length``, by chunked transfer coding, or by the connection's end.

The grammar is h11's (``h11/_abnf.py``, the parser Hypercorn runs on the
inbound side), and this module accepts nothing h11 rejects. Where h11 is
lenient, so that two parsers on one path could frame the same bytes
differently, it is stricter still: no obs-fold, no bare LF or CR, no
Transfer-Encoding together with Content-Length (RFC 9112 §6.3: "ought to be
handled as an error"; h11 lets the Transfer-Encoding win), no Transfer-Encoding
on HTTP/1.0, no version other than 1.0 and 1.1, no status outside 100-599, no
``101``, and no bytes after the end of a response. A test feeds generated and
mutated responses to both parsers and holds this module to that.

Buffers are ``bytearray`` s consumed by offset, so a read holding many tiny
chunks costs time linear in its size, and every buffer has a bound: the head
(:data:`MAX_HEAD`), a chunk-size line, the trailer section.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from feathergate.errors import InvalidUpstreamRequest, UpstreamProtocolError

__all__ = [
    "MAX_HEAD",
    "BodyFraming",
    "HeadReader",
    "ResponseHead",
    "encode_request",
    "parse_head",
]

MAX_HEAD = 64 * 1024  # every head of one response, 1xx ones included
MAX_CHUNK_LINE = 4 * 1024
MAX_TRAILERS = 16 * 1024

# h11/_abnf.py, as patterns over latin-1 text (one character per byte). After
# ``name:``, h11's ``OWS field-value OWS`` is any run of characters but NUL, CR,
# LF, VT and FF (its ``[^\x00\s]`` over bytes, plus space and tab), so one
# character class checks it; its reason phrase is the same class.
_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_TOKEN_RE = re.compile(_TOKEN)
_FIELD = rf"{_TOKEN}:[^\x00\r\n\x0b\x0c]*"
_FIELDS = re.compile(rf"{_FIELD}(?:\r\n{_FIELD})*")
_STATUS = r"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\x00\r\n\x0b\x0c]*)?"
_HEAD = re.compile(rf"{_STATUS}(?:\r\n{_FIELD})*")
_LENGTH = re.compile(r"[0-9]{1,20}")
# Chunk extensions are skipped, as h11 skips them, but without control bytes.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[\t\x20-\x7e\x80-\xff]*)?[ \t]*")

# What goes out is stricter than what comes in: visible ASCII and obs-text
# only, never a control byte, and nothing a latin-1 encode could refuse.
_OUT_VCHAR = r"[\x21-\x7e\x80-\xff]"
_OUT_FIELD = re.compile(rf"{_TOKEN}: (?:{_OUT_VCHAR}+(?:[ \t]+{_OUT_VCHAR}+)*)?")
_REQUEST_START = re.compile(rf"{_TOKEN} [\x21-\x7e]+ HTTP/1\.1\r\nhost: [\x21-\x7e]+")
# Written by the client from the body it sends; never taken from a caller.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "upgrade"})
_USER_AGENT = "user-agent: feathergate"
# Checked lines by (name, value): a deployment sends the same few headers on
# every request, and a dict lookup costs a fifth of the regex.
_CHECKED: dict[tuple[str, str], tuple[str, bool]] = {}
_CHECKED_MAX = 4096


def encode_request(
    method: str, target: str, host: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """The request head and body in one buffer.

    ``headers`` come from the configuration (keys, ``extra_headers``), never
    from a client, so a name or value HTTP cannot carry (CR, LF, NUL, a
    character beyond latin-1) is :class:`InvalidUpstreamRequest`: a 500 that
    names the header and never shows its value, which may be a key. A
    ``host`` header is dropped (a connection talks to its origin only), a
    ``user-agent`` replaces FeatherGate's.
    """
    start = f"{method} {target} HTTP/1.1\r\nhost: {host}"
    if _REQUEST_START.fullmatch(start) is None:
        raise InvalidUpstreamRequest(f"cannot send an upstream request line for {method[:20]!r}")
    lines = [start]
    agent = True
    for field in headers:
        line, is_agent = _CHECKED.get(field) or _check(*field)
        if line:
            lines.append(line)
            agent = agent and not is_agent
    if agent:
        lines.append(_USER_AGENT)
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


def _check(name: str, value: str) -> tuple[str, bool]:
    """The field's line ("" to drop it) and whether it is the user-agent."""
    key = name.lower()
    if key in _FRAMING_HEADERS:
        raise InvalidUpstreamRequest(
            f"the upstream request header {name!r} is the HTTP client's to write"
        )
    line = f"{name}: {value}"
    if _OUT_FIELD.fullmatch(line) is None:
        shown = name if _TOKEN_RE.fullmatch(name) else f"{name[:40]!r}"
        raise InvalidUpstreamRequest(
            f"the upstream request header {shown} has a character HTTP cannot carry "
            "(CR, LF, NUL, a space at either end, or beyond latin-1)"
        )
    checked = ("" if key == "host" else line, key == "user-agent")
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED[name, value] = checked
    return checked


class ResponseHead(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", "
    keep_alive: bool


def _malformed(what: str, data: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"upstream sent a malformed {what}: {data[:80]!r}")


def _fields(lines: list[str]) -> dict[str, str]:
    """Lines already matched by ``_FIELD``."""
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _framing_fields(headers: dict[str, str], *, http10: bool) -> dict[str, str]:
    """Check Content-Length and Transfer-Encoding as h11 does (and more), normalised as h11
    does: one length, and ``chunked`` in lower case."""
    length = headers.get("content-length")
    if length is not None:
        # RFC 9110 §8.6: repeated identical values are one value.
        values = {part.strip(" \t") for part in length.split(",")}
        length = values.pop()
        if values or _LENGTH.fullmatch(length) is None:
            raise _malformed("content-length", headers["content-length"])
        headers["content-length"] = length
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.lower() != "chunked":
            raise _malformed("transfer-encoding (only 'chunked' is supported)", coding)
        if length is not None:
            raise UpstreamProtocolError("upstream sent both transfer-encoding and content-length")
        if http10:  # RFC 9112 §6.1: the framing is faulty
            raise UpstreamProtocolError("upstream sent transfer-encoding in an HTTP/1.0 response")
        headers["transfer-encoding"] = "chunked"
    return headers


def _bad_line(lines: list[str]) -> UpstreamProtocolError:
    for line in lines:
        if re.fullmatch(_FIELD, line) is None:  # obs-fold, a space before the colon, NUL...
            return _malformed("header line", line)
    return _malformed("header section", "\r\n".join(lines))  # pragma: no cover - unreachable


def parse_head(data: bytes | bytearray) -> ResponseHead:
    """Parse a status line and fields (``data`` ends before the blank line)."""
    text = data.decode("latin-1")
    lines = text.split("\r\n")
    status = _HEAD.fullmatch(text)
    if status is None:
        if re.fullmatch(_STATUS, lines[0]) is None:
            raise _malformed("status line", lines[0])
        raise _bad_line(lines[1:])
    http10 = status[1] == "0"
    headers = _framing_fields(_fields(lines[1:]), http10=http10)
    connection = headers.get("connection", "")
    keep_alive = not http10 and "close" not in {
        token.strip(" \t") for token in connection.lower().split(",")
    }
    return ResponseHead(int(status[2]), headers, keep_alive)


class HeadReader:
    """Collects bytes until the final response head; interim 1xx heads are skipped.

    ``feed`` returns the head and the bytes after it once the head is whole,
    ``None`` while it is not.
    """

    __slots__ = ("_buffer", "_scanned", "_skipped")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self._skipped = 0

    def feed(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        buffer: bytes | bytearray = data
        if self._buffer:
            self._buffer += data
            buffer = self._buffer
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", max(start, self._scanned - 3))
            if end < 0:
                _no_bare_lf(buffer, max(start, self._scanned))
                if self._skipped + len(buffer) - start > MAX_HEAD:
                    raise UpstreamProtocolError("upstream response head is too large")
                if buffer is self._buffer:
                    del buffer[:start]
                else:
                    self._buffer += buffer[start:]
                self._scanned = len(self._buffer)
                return None
            if self._skipped + end - start > MAX_HEAD:
                raise UpstreamProtocolError("upstream response head is too large")
            head = parse_head(buffer[start:end])
            if head.status >= 200:
                return head, bytes(buffer[end + 4 :])
            if head.status == 101:  # never asked for: nothing to switch to
                raise UpstreamProtocolError("upstream switched protocols unasked (101)")
            self._skipped += end + 4 - start
            start = end + 4


def _no_bare_lf(buffer: bytes | bytearray, start: int) -> None:
    """Fail at once on a line ended by LF alone, rather than wait for a CRLF that never comes."""
    at = buffer.find(b"\n", start)
    while at >= 0:
        if at == 0 or buffer[at - 1] != 0x0D:
            raise UpstreamProtocolError("upstream ended a head line with a bare LF")
        at = buffer.find(b"\n", at + 1)


# Chunked body states.
_SIZE, _DATA, _CRLF, _TRAILERS, _END = range(5)


class BodyFraming:
    """Splits the bytes after a response head into body data and the end of the body.

    ``feed`` returns the body bytes in ``data`` (chunked coding removed);
    ``done`` turns true once the body is complete. Bytes past the end would
    belong to a response nobody asked for, so they are a protocol error.
    """

    __slots__ = ("_left", "_mode", "_pending", "_scanned", "_state", "done")

    def __init__(self, head: ResponseHead) -> None:
        self._pending = bytearray()  # an unfinished chunk-size line or trailer section
        self._scanned = 0
        self._state = _SIZE
        self._left = 0
        self.done = False
        length = head.headers.get("content-length")
        if head.status in (204, 304) or head.status < 200:
            self._mode, self.done = "length", True
        elif "transfer-encoding" in head.headers:
            self._mode = "chunked"
        elif length is not None:
            self._mode, self._left = "length", int(length)
            self.done = self._left == 0
        else:
            self._mode = "close"

    @property
    def reusable(self) -> bool:
        """A connection can carry another request only after a delimited body."""
        return self._mode != "close"

    def eof(self) -> None:
        """The connection ended: fine for a close-delimited body, an error otherwise."""
        if self._mode == "close":
            self.done = True
        elif not self.done:
            raise UpstreamProtocolError("upstream closed the connection mid-body")

    def feed(self, data: bytes) -> bytes:
        if self.done:
            if data:
                raise UpstreamProtocolError("upstream sent bytes after the end of its response")
            return b""
        if self._mode == "close":
            return data
        if self._mode == "length":
            if len(data) > self._left:
                raise UpstreamProtocolError("upstream sent more than its content-length")
            self._left -= len(data)
            self.done = self._left == 0
            return data
        return self._chunked(data)

    def _chunked(self, data: bytes) -> bytes:
        pending = self._pending
        buffer: bytes | bytearray = data
        if pending:
            pending += data
            buffer = pending
        pos, end = 0, len(buffer)
        out: list[bytes | bytearray] = []
        state, left = self._state, self._left
        while pos < end:
            if state == _DATA:
                take = min(left, end - pos)
                out.append(buffer[pos : pos + take])
                pos += take
                left -= take
                if not left:
                    state, left = _CRLF, 2
            elif state == _CRLF:
                expected = b"\r\n"[2 - left :]
                got = buffer[pos : pos + left]
                if got != expected[: len(got)]:
                    raise UpstreamProtocolError("malformed chunked body: no CRLF after a chunk")
                pos += len(got)
                left -= len(got)
                if not left:
                    state = _SIZE
            elif state == _SIZE:
                line_end = buffer.find(b"\r\n", max(pos, self._scanned - 1))
                if line_end < 0 or line_end - pos > MAX_CHUNK_LINE:
                    if end - pos > MAX_CHUNK_LINE:
                        raise UpstreamProtocolError("upstream sent a chunk-size line too long")
                    break
                size = _CHUNK_LINE.fullmatch(buffer, pos, line_end)
                if size is None:
                    raise UpstreamProtocolError(
                        f"malformed chunk size {bytes(buffer[pos : min(line_end, pos + 20)])!r}"
                    )
                pos = line_end + 2
                self._scanned = 0
                left = int(size[1], 16)
                if not left:
                    state = _TRAILERS
                elif pos + left + 2 <= end and buffer.startswith(b"\r\n", pos + left):
                    out.append(buffer[pos : pos + left])  # a whole chunk: the usual case
                    pos += left + 2
                    left = 0
                else:
                    state = _DATA
            elif state == _TRAILERS:
                if buffer[pos : pos + 2] == b"\r\n":
                    pos += 2
                    state = _END
                    continue
                if end - pos < 2:
                    break
                blank = buffer.find(b"\r\n\r\n", max(pos, self._scanned - 3))
                if blank < 0 or blank - pos > MAX_TRAILERS:
                    if end - pos > MAX_TRAILERS:
                        raise UpstreamProtocolError("upstream sent too large a trailer section")
                    break
                # Trailers are read only to check them: nothing here needs one.
                trailers = bytes(buffer[pos:blank]).decode("latin-1")
                if _FIELDS.fullmatch(trailers) is None:
                    raise _bad_line(trailers.split("\r\n"))
                _framing_fields(_fields(trailers.split("\r\n")), http10=False)
                pos = blank + 4
                self._scanned = 0
                state = _END
            else:
                raise UpstreamProtocolError("upstream sent bytes after the end of its response")
        self._state, self._left = state, left
        self.done = state == _END
        if buffer is pending:
            del pending[:pos]
        elif pos < end:
            pending += buffer[pos:]
        if pending:
            self._scanned = len(pending)
        if not out:
            return b""
        return out[0] if len(out) == 1 and type(out[0]) is bytes else b"".join(out)
