"""``POST /v1/embeddings``: OpenAI's request, checked as OpenAI checks it (INGRESS.md §1).

``input`` is a string, a list of strings, a token array or a list of token
arrays: never empty, at most 2,048 items, no empty string and no empty token
array. ``encoding_format`` is ``float`` or ``base64`` (the ``openai`` SDK asks
for base64 unless told otherwise, and decodes little-endian float32s);
``dimensions`` a positive integer; ``user`` a string. Anything else is left
for the upstream to judge (the passthrough) or the translation to refuse.

The parsed request keeps the body's text (:mod:`.passthrough_body`) for the
passthrough, and the inputs as a list, for the translations that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from feathergate.errors import InvalidRequest
from feathergate.ingress import Headers
from feathergate.ingress.passthrough_body import decode_object, required_model
from feathergate.splice import Members

__all__ = ["MAX_INPUTS", "OPENAI_EMBEDDINGS", "EmbeddingsIngress", "EmbeddingsRequest"]

MAX_INPUTS = 2048

Encoding = Literal["float", "base64"]


@dataclass(frozen=True, slots=True, eq=False)
class EmbeddingsRequest:
    members: Members  # the body's text, parsed, with where ``model`` is in it
    model: str
    inputs: list[str] | list[list[int]]  # one item per vector asked for
    tokens: bool  # the inputs are token arrays, not text
    encoding: Encoding  # what the client gets: float lists or base64 strings
    dimensions: int | None
    size: int = 0  # bytes of the raw body

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.members.value  # an object: the codec checked
        return body

    @property
    def stream(self) -> bool:
        return False

    @property
    def include_usage(self) -> bool:
        return False

    @property
    def json_mode(self) -> bool:
        return False


def _invalid(message: str, param: str = "input") -> InvalidRequest:
    return InvalidRequest(message, param=param)


def _token_array(value: list[Any], where: str) -> list[int]:
    if not value:
        raise _invalid(f"'{where}' must not be an empty token array")
    for token in value:
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise _invalid(f"'{where}' must hold non-negative integer token ids")
    return value


def _inputs(value: Any) -> tuple[list[str] | list[list[int]], bool]:
    """The inputs as a list, and whether they are token arrays."""
    if isinstance(value, str):
        if not value:
            raise _invalid("'input' must not be an empty string")
        return [value], False
    if not isinstance(value, list) or not value:
        raise _invalid(
            "'input' must be a non-empty string, array of strings, token array "
            "or array of token arrays"
        )
    if len(value) > MAX_INPUTS:
        raise _invalid(f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed")
    first = value[0]
    if isinstance(first, str):
        for i, text in enumerate(value):
            if not isinstance(text, str) or not text:
                raise _invalid(f"'input[{i}]' must be a non-empty string, like every item")
        return value, False
    if isinstance(first, int) and not isinstance(first, bool):
        return [_token_array(value, "input")], True
    if isinstance(first, list):
        for i, tokens in enumerate(value):
            if not isinstance(tokens, list):
                raise _invalid(f"'input[{i}]' must be a token array, like every item")
            _token_array(tokens, f"input[{i}]")
        return value, True
    raise _invalid("'input' items must be strings or token ids")


def _encoding(value: Any) -> Encoding:
    if value is None or value == "float":
        return "float"
    if value == "base64":
        return "base64"
    raise _invalid(
        f"'encoding_format' must be 'float' or 'base64', not {value!r}", "encoding_format"
    )


def _dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("'dimensions' must be an integer of at least 1", "dimensions")
    return value


class EmbeddingsIngress:
    def parse(
        self, raw: bytes, headers: Headers, query: bytes, max_messages: int = 0
    ) -> EmbeddingsRequest:
        """``max_messages`` bounds conversations; an embeddings request has none."""
        members = decode_object(raw)
        body: dict[str, Any] = members.value
        model = required_model(body)
        if "input" not in body:
            raise _invalid("'input' is required")
        inputs, tokens = _inputs(body["input"])
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise _invalid("'user' must be a string", "user")
        return EmbeddingsRequest(
            members,
            model,
            inputs,
            tokens,
            _encoding(body.get("encoding_format")),
            _dimensions(body.get("dimensions")),
            len(raw),
        )


OPENAI_EMBEDDINGS = EmbeddingsIngress()
