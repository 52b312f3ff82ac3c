"""HTTP/1.1 client framing (RFC 9112), pure: bytes in, bytes and facts out.

Only what talking to an LLM API needs: one request head written with its
body in a single buffer; a response head parsed once; a body framed by
``content-length``, by chunked transfer coding, or by the connection's end.
"""

from __future__ import annotations

from dataclasses import dataclass

from feathergate.errors import UpstreamProtocolError

__all__ = ["BodyFraming", "ResponseHead", "encode_request", "parse_head"]

MAX_HEAD = 64 * 1024


def encode_request(
    method: str, target: str, host: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "host"]
    lines.append(f"content-length: {len(body)}")
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
    return head + body


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: dict[str, str]  # lower-case names; repeated ones joined with ", "
    keep_alive: bool


def parse_head(data: bytes) -> ResponseHead:
    """Parse a status line and headers (``data`` ends before the blank line)."""
    try:
        text = data.decode("latin-1")
        status_line, *header_lines = text.split("\r\n")
        version, code, *_ = status_line.split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(version)
        status = int(code)
    except (ValueError, IndexError):
        raise UpstreamProtocolError(
            f"upstream sent a malformed status line: {data[:80]!r}"
        ) from None
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise UpstreamProtocolError(f"upstream sent a malformed header: {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and version == "HTTP/1.1"
    return ResponseHead(status, headers, keep_alive)


class BodyFraming:
    """Splits the bytes after a response head into body data and the end of the body.

    ``feed`` returns the body bytes in ``data`` (chunked coding removed);
    ``done`` turns true once the body is complete. Bytes past the end would
    belong to a response nobody asked for, so they are a protocol error.
    """

    __slots__ = ("_buffer", "_chunk_left", "_mode", "_remaining", "done")

    def __init__(self, head: ResponseHead, *, method: str = "POST") -> None:
        self._buffer = b""
        self._chunk_left = 0
        self.done = False
        encoding = head.headers.get("transfer-encoding", "").lower()
        length = head.headers.get("content-length")
        if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
            self._mode, self._remaining, self.done = "length", 0, True
        elif "chunked" in encoding:
            self._mode, self._remaining = "chunked", 0
        elif length is not None:
            try:
                self._remaining = int(length)
            except ValueError:
                raise UpstreamProtocolError(f"bad content-length {length!r}") from None
            self._mode = "length"
            self.done = self._remaining == 0
        else:
            self._mode, self._remaining = "close", 0

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
            if len(data) > self._remaining:
                raise UpstreamProtocolError("upstream sent more than its content-length")
            self._remaining -= len(data)
            self.done = self._remaining == 0
            return data
        return self._chunked(data)

    def _chunked(self, data: bytes) -> bytes:
        buffer = self._buffer + data
        out: list[bytes] = []
        while buffer:
            if self._chunk_left > 0:
                take = buffer[: self._chunk_left]
                out.append(take)
                self._chunk_left -= len(take)
                buffer = buffer[len(take) :]
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the CRLF after the chunk's data
                continue
            if self._chunk_left == -2:
                if len(buffer) < 2:
                    break
                if buffer[:2] != b"\r\n":
                    raise UpstreamProtocolError("malformed chunked body")
                buffer = buffer[2:]
                self._chunk_left = 0
                continue
            if self._chunk_left == -1:  # trailers, until a blank line
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                buffer = buffer[end + 2 :]
                if end == 0:
                    if buffer:
                        raise UpstreamProtocolError("upstream sent bytes after its response")
                    self.done = True
                    break
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 1024:
                    raise UpstreamProtocolError("malformed chunk size line")
                break
            size_text = buffer[:end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise UpstreamProtocolError(f"malformed chunk size {size_text[:20]!r}") from None
            buffer = buffer[end + 2 :]
            self._chunk_left = size if size else -1
        self._buffer = buffer
        return b"".join(out)
