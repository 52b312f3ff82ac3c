"""Incremental Server-Sent Events decoding (WHATWG HTML §9.2.6) and encoding.

Pure and synchronous: bytes go in as they arrive from the socket, whole
events come out. Line endings may be LF, CRLF or CR (Gemini uses CRLF) and
may be split across reads, CR and LF included.

Only the new read is searched for line ends: the pieces of a line still
open are kept in a list and joined once, when its end arrives (as httpx's
``LineDecoder`` does), so a long line costs time linear in its length, not
in its length times the number of reads. What one event may hold is bounded by ``max_event_bytes``:
an upstream that never ends its line or its event gets
:class:`~feathergate.errors.UpstreamProtocolError`, not the gateway's memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from feathergate.errors import UpstreamProtocolError

__all__ = ["DONE", "MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "encode_data"]

DONE = b"data: [DONE]\n\n"

# Gemini's image models send each image as one base64 ``inlineData`` part on
# one ``data:`` line: a 4096x4096 PNG can pass 30 MB, 40 MB in base64. The
# bound is there to stop a stream that never ends an event, not to police
# large answers, so it leaves room above that.
MAX_EVENT_BYTES = 64 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` objects, one ``feed`` at a time."""

    __slots__ = (
        "_data",
        "_data_bytes",
        "_event",
        "_head",
        "_id",
        "_max",
        "_pending",
        "_pending_bytes",
        "_pending_cr",
    )

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._head: bytes | None = b""  # the stream's first bytes, until a BOM is ruled out
        self._pending: list[bytes] = []  # the pieces of the line not ended yet
        self._pending_bytes = 0
        self._pending_cr = False
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._head is not None:
            chunk = self._strip_bom(chunk)
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across two reads
        self._pending_cr = False
        if not chunk:
            return []
        if b"\n" not in chunk and b"\r" not in chunk:
            self._hold(chunk)
            return []
        if b"\r" in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        if self._pending:
            lines[0] = b"".join([*self._pending, lines[0]])
            self._pending = []
            self._pending_bytes = 0
        last = lines.pop()
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw)
            if event is not None:
                events.append(event)
        if last:
            self._hold(last)
        return events

    def finish(self) -> list[SSEEvent]:
        """Flush what is left at end of stream; a final event without its blank line counts."""
        if self._head:  # a stream shorter than a BOM
            head, self._head = self._head, None
            self._hold(head)
        events = self.feed(b"\n\n") if (self._pending or self._data) else []
        self._pending = []
        self._pending_bytes = 0
        return events

    def _strip_bom(self, chunk: bytes) -> bytes:
        """WHATWG: one leading UTF-8 BOM is not part of the stream; it may come split."""
        assert self._head is not None
        head = self._head + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head
            return b""
        self._head = None
        return head.removeprefix(_BOM)

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_bytes += len(piece)
        self._check_size()

    def _check_size(self) -> None:
        if self._pending_bytes + self._data_bytes > self._max:
            raise UpstreamProtocolError(
                f"an upstream SSE event exceeded {self._max} bytes without ending"
            )

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            data, self._data, self._data_bytes = self._data, [], 0
            event, self._event = self._event, ""
            if not data:
                return None
            return SSEEvent("\n".join(data), event or "message", self._id)
        if raw.startswith(b":"):
            return None
        name, _, value = raw.decode("utf-8", "replace").partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_bytes += len(raw)
            self._check_size()
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


# json.dumps with any keyword builds a new encoder per call: a quarter of its cost per chunk.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def encode_data(payload: dict[str, Any]) -> bytes:
    """One OpenAI-style SSE event: a single ``data:`` line and a blank line."""
    return b"data: " + _COMPACT.encode(payload).encode() + b"\n\n"
