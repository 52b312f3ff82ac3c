"""The body of a request that OpenAI-compatible upstreams get as the client sent it.

Embeddings and legacy completions go to most upstreams byte for byte but for
``model`` (:mod:`feathergate.splice`): the text is parsed once, member by
member, and kept with where ``model`` lies in it, so a 2,048-input request is
never re-encoded on its way through.
"""

from __future__ import annotations

from typing import Any

from feathergate.errors import InvalidRequest
from feathergate.splice import Members, parse_members

__all__ = ["decode_object", "required_model"]


def decode_object(raw: bytes) -> Members:
    """The body as a JSON object, with the place of its ``model``; a 400 otherwise."""
    try:
        members = parse_members(raw.decode("utf-8"), "model", raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # the C scanner recurses once per level of nesting
        raise InvalidRequest("request body is nested too deeply") from None
    if not isinstance(members.value, dict):
        raise InvalidRequest("request body must be a JSON object")
    return members


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string", param="model")
    return model
