"""Replace one top-level member of a JSON object and leave every other byte alone.

A passthrough must send the body "as the client sent it but for ``model``"
(INGRESS.md §4.8.1): re-encoding the parsed object would keep the meaning but
not the bytes (number spellings, escapes, spacing), and the bytes are what
prompt caching and signatures are checked against upstream. So the object is
parsed member by member with the stdlib's C scanner, noting where each
``model`` value starts and ends, and the new value is spliced in there. It
costs what ``json.loads`` costs.

Given the bytes the text was decoded from (``source``), and when they are
ASCII (so character and byte offsets agree: JSON encoders escape everything
else by default), the result is cut from those bytes in one copy, instead of
slicing, joining and re-encoding the text: for a 3 MB embeddings answer that
is 0.05 ms instead of 2 ms.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Members", "parse_members", "set_member", "splice"]

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]  # C, untyped


@dataclass(frozen=True, slots=True)
class Members:
    """A parsed JSON object and where the values of a chosen key lie in the text."""

    text: str
    value: Any  # a dict, unless the text was valid JSON of another type
    spans: tuple[tuple[int, int], ...]  # [start, end) of each occurrence of the key
    source: bytes | None = None  # what ``text`` was decoded from, when ASCII


def _skip(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    return match.end() if match is not None else i


def parse_members(text: str, key: str, source: bytes | None = None) -> Members:
    """Parse ``text`` (a JSON object); raises ``ValueError`` like ``json.loads``.

    ``source``: the bytes ``text`` was decoded from, kept when they are ASCII.
    """
    if source is not None and not source.isascii():
        source = None
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        other = json.loads(text)  # a valid non-object still parses, for the caller to refuse
        return Members(text, other, (), source)
    value: dict[str, Any] = {}
    spans: list[tuple[int, int]] = []
    i = _skip(text, i + 1)
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i : i + 1] != '"':
                raise ValueError(f"expected a property name at character {i}")
            name, i = _scanstring(text, i + 1)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                raise ValueError(f"expected ':' at character {i}")
            i = _skip(text, i + 1)
            try:
                member, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise ValueError(str(exc)) from None
            value[name] = member
            if name == key:
                spans.append((i, end))
            i = _skip(text, end)
            if text[i : i + 1] == ",":
                i = _skip(text, i + 1)
                continue
            if text[i : i + 1] == "}":
                i += 1
                break
            raise ValueError(f"expected ',' or '}}' at character {i}")
    if _skip(text, i) != len(text):
        raise ValueError(f"extra data at character {i}")
    return Members(text, value, tuple(spans), source)


def splice(members: Members, replacement: Any) -> bytes:
    """The text with every value of the key replaced by ``replacement``, as UTF-8."""
    encoded = json.dumps(replacement)
    source = members.source
    if source is not None:
        view, value = memoryview(source), encoded.encode()
        parts: list[bytes | memoryview] = []
        at = 0
        for start, end in members.spans:
            parts += (view[at:start], value)
            at = end
        parts.append(view[at:])
        return b"".join(parts)
    text = members.text
    for start, end in reversed(members.spans):
        text = text[:start] + encoded + text[end:]
    return text.encode()


def set_member(members: Members, key: str, replacement: Any) -> bytes:
    """:func:`splice`, or, when the object has no ``key`` (a member the
    upstream left out), the object with ``key`` added first."""
    if members.spans:
        return splice(members, replacement)
    text = members.text
    start = _skip(text, 0) + 1  # after the "{"
    comma = "" if text[_skip(text, start) : _skip(text, start) + 1] == "}" else ","
    head = ("{" + json.dumps(key) + ":" + json.dumps(replacement) + comma).encode()
    if members.source is not None:
        return b"".join((head, memoryview(members.source)[start:]))
    return head + text[start:].encode()
