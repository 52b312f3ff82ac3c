"""The stream of an OpenAI-compatible upstream to an OpenAI client, bytes in, bytes out.

The general pipe (``operations/chat.py``) decodes every SSE event into an
object, parses its JSON, and encodes the chunk again: about a tenth of the
gateway's CPU per relayed chunk. For a passthrough almost all of that is
wasted, as only ``model`` changes. So an event of the one common shape, a
single ``data: {...}`` line ended by a blank line, is still parsed (with the
C parser, so that every decision of :class:`OpenAIStreamTranslator` is made
on the real object: errors, dropped chunks, the finish, usage), but goes out
as the upstream's own bytes with the value of the top-level ``model`` spliced
in. Anything else takes the general path, exactly:

- an event of another shape (``event:`` or ``id:`` fields, several lines,
  comments, ``data:`` without its space): that event alone, through an SSE
  decoder and the translator, encoded again;
- a chunk whose top-level ``model`` is not found by :data:`_MODEL` (only
  plain strings, numbers and literals before it, no escapes, the same value
  as the parsed one, spelled once): that chunk, encoded again;
- a stream with a CR anywhere, a leading BOM, or an event longer than
  ``_MAX_FAST_EVENT`` bytes: the rest of the stream, through the general path.

One difference is left: a chunk that spells ``model`` a second time with
escapes in the key (``"mod\\u0065l"``) keeps that second member as it came,
where the general path writes the key once. Only an upstream that sends such
a chunk sees its own value back, and finding it would cost a second parse.
"""

from __future__ import annotations

import json
import re
from typing import Any

from feathergate.errors import GatewayError
from feathergate.providers.base import CallContext, Chunk, Usage, translate_sse, usage_of
from feathergate.providers.openai.stream import OpenAIStreamTranslator
from feathergate.sse import DONE, SSEDecoder, encode_data

__all__ = ["OpenAIPassthroughPipe", "splice_model"]

_BOM = b"\xef\xbb\xbf"
_DATA = b"data: "
# Past this an event still unended goes the general way, which bounds it and
# keeps a long line linear (SSEDecoder); the fast path would search it anew per read.
_MAX_FAST_EVENT = 256 * 1024
# The top-level "model" of a chunk, when only simple members come before it
# (OpenAI, vLLM, Ollama and Groq all send id, object, created, then model): a
# string without escapes, a number or a literal cannot hide a nested object, so
# the match is the top level's own member.
_MODEL = re.compile(
    rb'\s*\{(?:\s*"[^"\\]*"\s*:\s*(?:"[^"\\]*"|-?[0-9][0-9.eE+-]*|null|true|false)\s*,)*?'
    rb'\s*"model"\s*:\s*"([^"\\]*)"'
)


def _model_span(payload: bytes, upstream: Any) -> tuple[int, int] | None:
    """Where the top-level ``model``'s value is in ``payload``, quotes included.

    ``upstream`` is the value the parsed object holds. None when the member
    cannot be found for sure (see :data:`_MODEL`).
    """
    found = _MODEL.match(payload)
    if (
        found is None
        or found.group(1).decode("utf-8", "replace") != upstream
        or payload.count(b'"model"') != 1
    ):
        return None
    start, end = found.span(1)
    return start - 1, end + 1


def splice_model(payload: bytes, upstream: Any, alias: bytes) -> bytes | None:
    """``payload`` (a JSON object) with its top-level ``model`` replaced by ``alias``.

    ``upstream`` is the value the parsed object holds; ``alias`` is JSON. None
    when the top-level member cannot be found for sure (see :data:`_MODEL`):
    the caller encodes the object instead.
    """
    found = _model_span(payload, upstream)
    if found is None:
        return None
    start, end = found
    return b"".join((payload[:start], alias, payload[end:]))


class OpenAIPassthroughPipe:
    """A :class:`~feathergate.operations.base.StreamPipe` for OpenAI-compatible upstreams."""

    __slots__ = (
        "_alias",
        "_buffer",
        "_decoder",
        "_encoded_alias",
        "_general",
        "_model_prefix",
        "_model_value",
        "_spliced_prefix",
        "_started",
        "_strip_usage",
        "_translator",
        "tokens",
    )

    def __init__(self, ctx: CallContext, *, strip_usage: bool = False) -> None:
        self._translator = OpenAIStreamTranslator(ctx)
        # Usage the gateway asked for itself (billing), not the client: counted, not sent.
        self._strip_usage = strip_usage
        self._alias = ctx.alias
        self._encoded_alias = json.dumps(ctx.alias).encode()
        self._decoder = SSEDecoder()
        self._buffer = b""
        self._started = False  # the first bytes were seen (a BOM is ruled out)
        self._general = False  # the rest of the stream takes the general path
        # The last chunk's bytes up to its top-level model's value, and the
        # same with the alias in: a chunk that starts with the very same bytes
        # (an upstream repeats id, object, created and model in every chunk)
        # and parses to the same model has it in the same place, found
        # without _MODEL.
        self._model_prefix = b""
        self._model_value: Any = None  # the parsed model that prefix holds
        self._spliced_prefix = b""
        self.tokens: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        if self._general:
            return self._through_decoder(data)
        buffer = self._buffer + data if self._buffer else data
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return b""
            self._started = True
            if buffer.startswith(_BOM):
                return self._give_up(buffer)
            self._decoder.feed(b"\n")  # past its BOM check, with nothing pending
        if b"\r" in data:
            return self._give_up(buffer)
        if (
            buffer is data
            and data.startswith(_DATA)
            and data.endswith(b"\n\n")
            and data.find(b"\n") == len(data) - 2
        ):
            # One whole event in one read, the usual case: nothing to split or keep.
            return self._fast(data[len(_DATA) : -2])
        out: list[bytes] = []
        start = 0
        try:
            while (end := buffer.find(b"\n\n", start)) >= 0:
                event = buffer[start:end]
                start = end + 2
                if event.startswith(_DATA) and b"\n" not in event:
                    out.append(self._fast(event[len(_DATA) :]))
                elif event:
                    out.append(self._through_decoder(event + b"\n\n"))
        except GatewayError as err:
            err.ahead = b"".join(out)  # what came before the error in this read
            raise
        rest = buffer[start:] if start else buffer
        if len(rest) > _MAX_FAST_EVENT:
            out.append(self._give_up(rest))
        else:
            self._buffer = rest
        return b"".join(out)

    def finish(self) -> bytes:
        translator = self._translator
        buffer, self._buffer = self._buffer, b""
        events = self._decoder.feed(buffer) + self._decoder.finish()
        chunks = [c for e in events for c in translator.feed(e)]
        return self._encode(chunks + translator.finish()) + DONE

    def _fast(self, payload: bytes) -> bytes:
        chunk = self._translator.admit(payload)
        if chunk is None:
            return b""
        usage = chunk.get("usage")
        if usage:
            self.tokens = usage_of(usage)
            if self._strip_usage and not chunk.get("choices"):
                return b""
        model = chunk.get("model")
        prefix = self._model_prefix
        if (
            prefix
            and model == self._model_value  # not a second key spelled with escapes
            and payload.startswith(prefix)
            and payload.count(b'"model"') == 1
        ):
            return b"".join((_DATA, self._spliced_prefix, payload[len(prefix) :], b"\n\n"))
        found = _model_span(payload, model)
        if found is None:
            chunk["model"] = self._alias
            return encode_data(chunk)
        start, end = found
        self._model_prefix = payload[:end]
        self._model_value = model
        self._spliced_prefix = payload[:start] + self._encoded_alias
        return b"".join((_DATA, self._spliced_prefix, payload[end:], b"\n\n"))

    def _give_up(self, buffer: bytes) -> bytes:
        self._general = True
        self._buffer = b""
        return self._through_decoder(buffer)

    def _through_decoder(self, data: bytes) -> bytes:
        return translate_sse(self._decoder, self._translator, data, self._encode)

    def _encode(self, chunks: list[Chunk]) -> bytes:
        out = []
        for chunk in chunks:
            chunk["model"] = self._alias
            usage = chunk.get("usage")
            if usage:
                self.tokens = usage_of(usage)
                if self._strip_usage and not chunk.get("choices"):
                    continue
            out.append(encode_data(chunk))
        return b"".join(out)
