"""Client JSON in and out: bounded nesting on the way in, valid UTF-8 on the way out.

Everything a client sends is parsed here: the request body, and the JSON it
nests inside strings (tool-call arguments, tool results). ``json.loads``
recurses once per level, so a body of ten thousand ``[`` raises
``RecursionError``, and a body just shallow enough to parse would make every
later recursive step (``json.dumps``, the Gemini schema cleaner) fail
instead. So nesting is capped at :data:`MAX_DEPTH`, far above what a chat
request needs (a tool schema nests a few levels per model it describes) and
far below the interpreter's recursion limit; deeper input is a 400 naming
where it was.

A body of :data:`LARGE_BODY` bytes or more is parsed, translated and
encoded in a worker thread (:mod:`feathergate.offload`), which shares the
GIL with the event loop. The loop gets the GIL back only between bytecodes,
never inside one C call, and one ``json.loads`` or ``json.dumps`` of a 30 MB
body is a single C call of a few hundred milliseconds. So large bodies are
parsed with a no-op object hook (the parser calls back into Python for each
object: a switch point each time), encoded in pieces of at most
:data:`_PIECE` list items or :data:`_CHARS` characters, and taken apart in
pieces when the request is done (:func:`dispose`).

On the way out, translated bodies are encoded as UTF-8, which cannot carry
a lone UTF-16 surrogate (JSON's ``"\\ud800"`` escape decodes to one).
Anthropic answers such a body with 400 "no low surrogate in string" and
Gemini parses into protobuf strings, which must be valid UTF-8; escaping it
would only move the same 400 upstream, after a round trip. So it is a 400
here, naming the client's field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from feathergate.errors import InvalidRequest

__all__ = [
    "LARGE_BODY",
    "MAX_DEPTH",
    "check_depth",
    "dispose",
    "dumps",
    "loads",
    "parse",
    "too_deep",
]

MAX_DEPTH = 128
LARGE_BODY = 1024 * 1024
_PIECE = 64  # list items per C call when encoding or freeing a large body
_CHARS = 1 << 20  # characters of one long string per C call when encoding it

_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: str | bytes, param: str | None) -> Any:
    """Parse client JSON.

    Raises ``ValueError`` for text that is not JSON (``NaN`` and ``Infinity``
    included), for the caller to judge, and :class:`InvalidRequest` naming
    ``param`` for JSON nested deeper than :data:`MAX_DEPTH`.
    """
    value = parse(data, param)
    check_depth(value, param)
    return value


def parse(data: str | bytes, param: str | None) -> Any:
    """:func:`loads` without the depth check, for a caller with cheaper checks to make first."""
    hook = _same if len(data) >= LARGE_BODY else None
    try:
        return json.loads(data, parse_constant=_reject_constant, object_hook=hook)
    except RecursionError:
        raise too_deep(param) from None


def _same(value: dict[str, Any]) -> dict[str, Any]:
    return value


def check_depth(value: Any, param: str | None) -> None:
    if _deeper_than(value, MAX_DEPTH):
        raise too_deep(param if param is not None else _deep_path(value))


def too_deep(param: str | None) -> InvalidRequest:
    where = f"{param}: " if param else ""
    return InvalidRequest(f"{where}JSON nested deeper than {MAX_DEPTH} levels", param=param)


def _deeper_than(value: Any, limit: int) -> bool:
    # Level by level, without recursion or a tuple per node: this runs on
    # every request, and a long transcript has tens of thousands of nodes.
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
    return False


def _deep_path(value: Any) -> str | None:
    """The top-level field (and item) under which the body nests too deeply."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if not isinstance(child, dict | list) or not _deeper_than(child, MAX_DEPTH - 1):
            continue
        path = f"{key}" if isinstance(key, str) else f"[{key}]"
        if isinstance(child, list):
            for index, item in enumerate(child):
                if isinstance(item, dict | list) and _deeper_than(item, MAX_DEPTH - 2):
                    return f"{path}[{index}]"
        return path
    return None


def dumps(
    payload: Any, source: Mapping[str, Any], *, ascii: bool = False, pieces: bool = False
) -> bytes:
    """``payload`` as compact JSON bytes; ``source`` is the client body it came from.

    UTF-8, where a lone surrogate is a 400 naming the field of ``source``
    that holds it; with ``ascii``, every character beyond ASCII is escaped
    instead, a lone surrogate included, for an upstream that judges it
    itself. A number JSON cannot carry (``1e400`` parses as infinity) is a
    400 either way. ``pieces``: a large body's, encoded a piece at a time.
    """
    encoder = json.JSONEncoder(ensure_ascii=ascii, separators=(",", ":"), allow_nan=False)
    try:
        text = "".join(_pieces(payload, encoder.encode, 6)) if pieces else encoder.encode(payload)
    except ValueError:
        what = "number out of range (JSON has no Infinity or NaN)"
        raise _bad(source, _not_finite, what) from None
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise _bad(
            source, _has_surrogate, "text contains a lone UTF-16 surrogate, not valid Unicode"
        ) from None


def _pieces(value: Any, encode: Callable[[Any], str], depth: int) -> list[str]:
    """``value`` encoded in pieces, each one C call.

    A piece is a leaf, :data:`_PIECE` items of a long list, or
    :data:`_CHARS` characters of a long string. Short lists and objects are
    opened up (a Gemini body is one ``contents`` item holding every part)
    down to ``depth``; the items of a long list are not.
    """
    if type(value) is str and len(value) > _CHARS:  # JSON escapes each character alone
        chunks = (encode(value[i : i + _CHARS])[1:-1] for i in range(0, len(value), _CHARS))
        return ['"', *chunks, '"']
    if depth == 0 or not value or type(value) not in (dict, list):
        return [encode(value)]
    if type(value) is dict:
        if not all(type(key) is str for key in value):
            return [encode(value)]
        out = ["{"]
        for key, item in value.items():
            out += (encode(key), ":", *_pieces(item, encode, depth - 1), ",")
        out[-1] = "}"
        return out
    if len(value) > _PIECE:
        batches = (encode(value[i : i + _PIECE])[1:-1] for i in range(0, len(value), _PIECE))
        return ["[", ",".join(batches), "]"]
    out = ["["]
    for item in value:
        out += (*_pieces(item, encode, depth - 1), ",")
    out[-1] = "]"
    return out


def dispose(value: Any, depth: int = 6) -> None:
    """Empty a large body a piece at a time: freed at once, it is one long C call.

    Like :func:`_pieces`: short lists and objects are opened up, a long
    list goes :data:`_PIECE` items at a time. For the end of a request, in a
    worker thread; ``value`` is empty after.
    """
    if depth == 0:
        return
    if type(value) is dict:
        for item in value.values():
            dispose(item, depth - 1)
        value.clear()
    elif type(value) is list:
        if len(value) > _PIECE:
            while value:
                del value[-_PIECE:]
        else:
            for item in value:
                dispose(item, depth - 1)
            value.clear()


def _bad(source: Mapping[str, Any], bad: Callable[[Any], bool], what: str) -> InvalidRequest:
    param = _find(source, bad)
    return InvalidRequest(f"{param}: {what}" if param else what, param=param)


def _has_surrogate(value: Any) -> bool:
    return isinstance(value, str) and _SURROGATE.search(value) is not None


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _find(node: Any, bad: Callable[[Any], bool], path: str = "") -> str | None:
    """The path (``messages[0].content``) of the first value, or key, that is ``bad``.

    Recursive: ``node`` passed :func:`loads`, so it nests at most
    :data:`MAX_DEPTH` levels.
    """
    if isinstance(node, dict):
        items: Any = ((f"{path}.{key}" if path else str(key), key, v) for key, v in node.items())
    elif isinstance(node, list):
        items = ((f"{path}[{index}]", None, v) for index, v in enumerate(node))
    else:
        return None
    for child_path, key, child in items:
        if bad(key) or bad(child):
            # The path may hold the surrogate itself (a bad key), and it goes
            # into our own UTF-8 error body.
            return _SURROGATE.sub("\ufffd", child_path)
        found = _find(child, bad, child_path)
        if found is not None:
            return found
    return None
