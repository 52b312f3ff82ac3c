"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: the request as the client sent it.

Only what every upstream needs is checked here (a JSON object, ``model``,
``messages``, ``max_tokens``, ``stream``), so that an Anthropic upstream still
judges everything else itself and a field newer than this code goes through
untouched. The translation for other upstreams checks the rest
(:mod:`.to_chat`). The text is kept with the place of ``model`` in it: the
passthrough sends it on byte for byte but for ``model`` (:mod:`feathergate.splice`).

Headers kept for the upstream: ``anthropic-version`` and ``anthropic-beta``
(INGRESS.md §4.9); the SDK's beta namespace adds ``?beta=true`` to the path,
which routing ignores and the passthrough keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feathergate import clientjson
from feathergate.errors import InvalidRequest
from feathergate.ingress import Headers, header
from feathergate.splice import Members, parse_members

__all__ = [
    "ANTHROPIC_COUNT_TOKENS",
    "ANTHROPIC_MESSAGES",
    "CountTokensIngress",
    "MessagesIngress",
    "MessagesRequest",
]


@dataclass(frozen=True, slots=True, eq=False)
class MessagesRequest:
    """A Messages API request (or a count_tokens one, with ``stream`` false)."""

    members: Members  # the body's text, parsed, with where ``model`` is in it
    model: str
    stream: bool
    version: str | None = None  # anthropic-version, as sent
    betas: str | None = None  # anthropic-beta, as sent (comma-separated)
    beta_query: bool = False  # the path had ?beta=true
    size: int = 0  # bytes of the raw body
    # Translations of this request, per upstream family; filled on first use.
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.members.value  # an object: the codec checked
        return body

    @property
    def include_usage(self) -> bool:
        return True  # an Anthropic stream always ends with its usage

    @property
    def json_mode(self) -> bool:
        return False  # the Messages API has no response_format


def _decode(raw: bytes) -> Members:
    try:
        members = parse_members(raw.decode("utf-8"), "model")
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise clientjson.too_deep(None) from None
    if not isinstance(members.value, dict):
        raise InvalidRequest("request body must be a JSON object")
    clientjson.check_depth(members.value, None)
    return members


def _common(body: dict[str, Any], max_messages: int) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required (a non-empty string)", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Field required (an array)", param="messages")
    if len(messages) > max_messages:
        raise InvalidRequest(
            f"messages: holds {len(messages)} messages; this gateway takes at most {max_messages}",
            param="messages",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages.{i}: an object with a 'role'", param=f"messages.{i}")
    return model


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _beta_query(query: bytes) -> bool:
    return b"beta=true" in query.split(b"&")


class MessagesIngress:
    def parse(
        self, raw: bytes, headers: Headers, query: bytes, max_messages: int
    ) -> MessagesRequest:
        members = _decode(raw)
        body = members.value
        model = _common(body, max_messages)
        if not body["messages"]:
            raise InvalidRequest("messages: at least one message is required", param="messages")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise InvalidRequest(
                "max_tokens: Field required (an integer of at least 0)", param="max_tokens"
            )
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise InvalidRequest("stream: Input should be a valid boolean", param="stream")
        return MessagesRequest(
            members,
            model,
            bool(stream),
            version=_text(header(headers, b"anthropic-version")),
            betas=_text(header(headers, b"anthropic-beta")),
            beta_query=_beta_query(query),
            size=len(raw),
        )


class CountTokensIngress:
    def parse(
        self, raw: bytes, headers: Headers, query: bytes, max_messages: int
    ) -> MessagesRequest:
        members = _decode(raw)
        return MessagesRequest(
            members,
            _common(members.value, max_messages),
            False,
            version=_text(header(headers, b"anthropic-version")),
            betas=_text(header(headers, b"anthropic-beta")),
            beta_query=_beta_query(query),
            size=len(raw),
        )


ANTHROPIC_MESSAGES = MessagesIngress()
ANTHROPIC_COUNT_TOKENS = CountTokensIngress()
