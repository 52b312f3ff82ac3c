"""One face for the three strict fakes, for the shared suite in tests/test_providers_e2e.py.

Each :class:`Upstream` scripts its fake in provider-neutral terms (a text
reply, tool calls, a length-limited reply, an HTTP error, an error inside the
stream) and reads back what the fake RECEIVED in the same neutral terms
(``param(body, "temperature")``, ``system_texts``, ``images``,
``tool_calls_sent``, ``tool_results_sent``), so a test body never says which
provider it runs against. What differs between providers on purpose is data,
in :data:`SUPPORT`.

:func:`provider_gateway` serves one fake and FeatherGate in front of it, with
the config a LiteLLM user would write: ``model_name: m`` routed to
``<provider>/<model>`` at ``api_base`` in the form each provider's users write
it. Two more aliases point at the same fake: ``m-badkey`` (a wrong key, for the
upstream's own 401) and ``m-drop`` (``drop_params: true``).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import openai

from feathergate.providers.anthropic.request import DEFAULT_MAX_TOKENS
from tests.conftest import gateway_config, run_gateway
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes import openai as fo
from tests.fakes.asgi import Receive, Scope, Send, lifespan, read_body
from tests.support.sdk import SDK
from tests.support.servers import serve_asgi

__all__ = [
    "CASES",
    "LOOPBACK_IMAGES",
    "OPENAI_ERROR_TYPES",
    "PNG",
    "SUPPORT",
    "Case",
    "ErrorCase",
    "Image",
    "ImageServer",
    "SentCall",
    "SentResult",
    "Supports",
    "Upstream",
    "provider_gateway",
]

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SIGNATURE = "c2lnbmVkLWJ5LXRoZS1mYWtl/+="  # base64 with +/=, as real signatures are


# -- what each provider supports ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorCase:
    """An upstream HTTP error and what the openai SDK must see (PROTOCOLS.md §4.7)."""

    upstream: int
    status: int
    error_type: str
    exception: type[openai.APIStatusError]

    def __str__(self) -> str:
        return f"{self.upstream}->{self.status}"


def _errors(*rows: tuple[int, int, str, type[openai.APIStatusError]]) -> tuple[ErrorCase, ...]:
    return tuple(ErrorCase(*row) for row in rows)


# OpenAI's own error types, which an OpenAI upstream's errors keep through the gateway.
OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    403: "invalid_request_error",  # e.g. code "unsupported_country_region_territory"
    404: "invalid_request_error",  # e.g. code "model_not_found"
    429: "requests",  # with code "rate_limit_exceeded"
    500: "server_error",
    503: "server_error",
}

_BAD = (400, 400, "invalid_request_error", openai.BadRequestError)
_DENIED = (403, 403, "permission_error", openai.PermissionDeniedError)
_MISSING = (404, 404, "not_found_error", openai.NotFoundError)
_LIMITED = (429, 429, "rate_limit_error", openai.RateLimitError)
_FAILED = (500, 500, "api_error", openai.InternalServerError)
_UNAVAILABLE = (503, 503, "api_error", openai.InternalServerError)
_TIMEOUT = (504, 504, "api_error", openai.InternalServerError)


@dataclass(frozen=True, slots=True)
class Supports:
    n: bool  # n > 1; else a 400 naming "n" before any upstream call
    logit_bias: bool  # else a 400 naming it, unless drop_params
    max_temperature: float  # what temperature is clamped to on the way up
    default_max_tokens: int | None  # sent when the client sets none
    data_images: str  # a data: URI image goes up as "pass" (untouched) or "inline"
    remote_images: str  # an http(s) image: "pass", "url" (a URL source) or "inline" (fetched)
    errors: tuple[ErrorCase, ...]  # the §4.7 rows that apply (401 is tested with a real bad key)


# What each provider supports, as the gateway must present it to an OpenAI client:
#
#                      openai          anthropic               gemini
#   n > 1              passed on       400 (param "n")         candidateCount
#   logit_bias         passed on       400, or dropped (*)     400, or dropped (*)
#   temperature 1.7    1.7             clamped to 1            1.7
#   no max_tokens      none sent       DEFAULT_MAX_TOKENS      none sent
#   data: URI image    passed on       base64 source           inlineData
#   https image        passed on       url source              fetched -> inlineData
#   wrong key          401             401                     400 API_KEY_INVALID -> 401
#   upstream errors    status kept     §4.7 (402->403, 413->400, 529 kept)  status kept
#
# (*) with drop_params: true, i.e. the alias "m-drop".
SUPPORT: dict[str, Supports] = {
    "openai": Supports(
        n=True,
        logit_bias=True,
        max_temperature=2.0,
        default_max_tokens=None,
        data_images="pass",
        remote_images="pass",
        errors=tuple(
            ErrorCase(status, status, OPENAI_ERROR_TYPES[status], exception)
            for status, exception in (
                (400, openai.BadRequestError),
                (403, openai.PermissionDeniedError),
                (404, openai.NotFoundError),
                (429, openai.RateLimitError),
                (500, openai.InternalServerError),
                (503, openai.InternalServerError),
            )
        ),
    ),
    "anthropic": Supports(
        n=False,
        logit_bias=False,
        max_temperature=1.0,
        default_max_tokens=DEFAULT_MAX_TOKENS,
        data_images="inline",
        remote_images="url",
        errors=_errors(
            _BAD,
            (402, 403, "permission_error", openai.PermissionDeniedError),
            _DENIED,
            _MISSING,
            (413, 400, "invalid_request_error", openai.BadRequestError),
            _LIMITED,
            _FAILED,
            _TIMEOUT,
            (529, 529, "overloaded_error", openai.InternalServerError),  # stays retryable
        ),
    ),
    "gemini": Supports(
        n=True,
        logit_bias=False,
        max_temperature=2.0,
        default_max_tokens=None,
        data_images="inline",
        remote_images="inline",
        errors=_errors(_BAD, _DENIED, _MISSING, _LIMITED, _FAILED, _UNAVAILABLE, _TIMEOUT),
    ),
}


# -- neutral views of what a fake received -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Image:
    kind: str  # "pass" (an OpenAI image_url part), "inline" or "url"
    value: str  # the URL, or the base64 data
    mime: str | None = None


@dataclass(frozen=True, slots=True)
class SentCall:
    id: str | None
    name: str
    args: Any
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class SentResult:
    id: str | None  # the call it answers, where the protocol pairs by id
    name: str | None  # where it pairs by name (Gemini)
    content: str


Usage = tuple[int, int]  # (prompt, completion) tokens the fake reports


def _blocks(content: Any) -> list[Any]:
    """Anthropic content: a string is one text block's worth, and holds no other blocks."""
    return content if isinstance(content, list) else []


def _joined(content: Any) -> str:
    """A string, or text parts / blocks joined: the same words either way."""
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content or [])


class Upstream(ABC):
    """One provider's fake, scripted and read back in neutral terms."""

    provider: str
    model: str
    api_key: str
    app: Any
    signature: str | None = None  # what a replayed tool call must carry back (Gemini 3)
    fake: Any

    @abstractmethod
    def api_base(self, url: str) -> str: ...

    @abstractmethod
    def expected_path(self, *, stream: bool) -> str:
        """Where the gateway must send a chat call, query included."""
        ...

    # scripting
    @abstractmethod
    def text(
        self, text: str, *, usage: Usage = (11, 7), finish: str = "stop", stopped_at: str = ""
    ) -> None:
        """A text answer; ``finish`` is "stop" or "length" (the upstream's token limit).

        ``stopped_at``: the client's stop sequence that ended it, for the
        providers that say which one did.
        """
        ...

    @abstractmethod
    def tool_calls(
        self, calls: list[tuple[str, dict[str, Any]]], *, text: str = "", usage: Usage = (11, 7)
    ) -> None: ...

    @abstractmethod
    def http_error(self, status: int, *, retry_after: str | None = None) -> None: ...

    @abstractmethod
    def stream_error(self, text: str, message: str) -> None:
        """Some of ``text``, then an error event carrying ``message`` inside the 200 stream."""
        ...

    # reading back: every fake records ``requests`` with a ``path`` and a parsed ``body``
    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.fake.requests]

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.fake.requests]

    @property
    @abstractmethod
    def keys(self) -> list[str | None]:
        """The API key each request carried, wherever this provider wants it."""
        ...

    @property
    def last(self) -> dict[str, Any]:
        body: dict[str, Any] = self.bodies[-1]
        return body

    @abstractmethod
    def param(self, body: dict[str, Any], name: str) -> Any:
        """Where ``temperature``, ``max_tokens``, ``stop``, ``n`` or ``logit_bias`` went."""
        ...

    @abstractmethod
    def system_texts(self, body: dict[str, Any]) -> list[str]: ...

    @abstractmethod
    def tool_names(self, body: dict[str, Any]) -> list[str]:
        """The functions declared to the model."""
        ...

    @abstractmethod
    def images(self, body: dict[str, Any]) -> list[Image]: ...

    @abstractmethod
    def tool_calls_sent(self, body: dict[str, Any]) -> list[SentCall]:
        """The calls of the last assistant turn in the history."""
        ...

    @abstractmethod
    def tool_results_sent(self, body: dict[str, Any]) -> list[SentResult]: ...


class OpenAIUpstream(Upstream):
    provider = "openai"
    model = "gpt-real"
    api_key = "sk-upstream-secret"

    def __init__(self) -> None:
        self.fake = self.app = fo.FakeOpenAI(self.api_key)

    def api_base(self, url: str) -> str:
        return f"{url}/v1"

    def expected_path(self, *, stream: bool) -> str:
        return "/v1/chat/completions"

    @staticmethod
    def _usage(usage: Usage) -> dict[str, int]:
        prompt, completion = usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def text(
        self, text: str, *, usage: Usage = (11, 7), finish: str = "stop", stopped_at: str = ""
    ) -> None:
        self.fake.script(fo.Reply(text=text, finish_reason=finish, usage=self._usage(usage)))

    def tool_calls(
        self, calls: list[tuple[str, dict[str, Any]]], *, text: str = "", usage: Usage = (11, 7)
    ) -> None:
        pairs = [(name, json.dumps(args)) for name, args in calls]
        self.fake.script(fo.Reply(text=text, tool_calls=pairs, usage=self._usage(usage)))

    def http_error(self, status: int, *, retry_after: str | None = None) -> None:
        error = {
            "message": f"upstream says {status}",
            "type": OPENAI_ERROR_TYPES[status],
            "param": None,
            "code": None,
        }
        headers = {"retry-after": retry_after} if retry_after else {}
        self.fake.script(fo.Reply(status=status, error={"error": error}, headers=headers))

    def stream_error(self, text: str, message: str) -> None:
        event = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        self.fake.script(fo.Reply(text=text, error_event=event))

    @property
    def keys(self) -> list[str | None]:
        auth = [r.headers.get("authorization", "") for r in self.fake.requests]
        return [a.removeprefix("Bearer ") if a.startswith("Bearer ") else None for a in auth]

    def param(self, body: dict[str, Any], name: str) -> Any:
        return body.get(name)

    def system_texts(self, body: dict[str, Any]) -> list[str]:
        system = ("system", "developer")
        return [_joined(m["content"]) for m in body["messages"] if m["role"] in system]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [t["function"]["name"] for t in body.get("tools", [])]

    def images(self, body: dict[str, Any]) -> list[Image]:
        return [
            Image("pass", part["image_url"]["url"])
            for m in body["messages"]
            if isinstance(m.get("content"), list)
            for part in m["content"]
            if part.get("type") == "image_url"
        ]

    def tool_calls_sent(self, body: dict[str, Any]) -> list[SentCall]:
        turn = [m for m in body["messages"] if m["role"] == "assistant"][-1]
        return [
            SentCall(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in turn["tool_calls"]
        ]

    def tool_results_sent(self, body: dict[str, Any]) -> list[SentResult]:
        return [
            SentResult(m["tool_call_id"], None, _joined(m["content"]))
            for m in body["messages"]
            if m["role"] == "tool"
        ]


class AnthropicUpstream(Upstream):
    provider = "anthropic"
    model = "claude-fake-1"
    api_key = "sk-test"

    def __init__(self) -> None:
        self.fake = self.app = fa.FakeAnthropic(api_key=self.api_key)

    def api_base(self, url: str) -> str:
        return url  # the host root, as LiteLLM users write it

    def expected_path(self, *, stream: bool) -> str:
        return "/v1/messages"

    def text(
        self, text: str, *, usage: Usage = (11, 7), finish: str = "stop", stopped_at: str = ""
    ) -> None:
        reason = {"stop": "stop_sequence" if stopped_at else "end_turn", "length": "max_tokens"}
        reply = fa.Reply(
            [fa.Text(text)],
            stop_reason=reason[finish],
            stop_sequence=stopped_at or None,
            usage=fa.Usage(*usage),
        )
        self.fake.script(reply)

    def tool_calls(
        self, calls: list[tuple[str, dict[str, Any]]], *, text: str = "", usage: Usage = (11, 7)
    ) -> None:
        blocks: list[fa.Block] = [fa.Text(text)] if text else []
        blocks += [fa.ToolUse(name, args) for name, args in calls]
        self.fake.script(fa.Reply(blocks, usage=fa.Usage(*usage)))

    def http_error(self, status: int, *, retry_after: str | None = None) -> None:
        kinds = {
            400: "invalid_request_error",
            402: "billing_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            500: "api_error",
            504: "timeout_error",
            529: "overloaded_error",
        }
        message = f"upstream says {status}"
        self.fake.script(fa.ErrorReply(status, kinds[status], message, retry_after=retry_after))

    def stream_error(self, text: str, message: str) -> None:
        # message_start, content_block_start, one text_delta: then `event: error`
        reply = fa.Reply([fa.Text(text, chunk=4)], error_after=3, error=("api_error", message))
        self.fake.script(reply)

    @property
    def keys(self) -> list[str | None]:
        return [r.headers.get("x-api-key") for r in self.fake.requests]

    def param(self, body: dict[str, Any], name: str) -> Any:
        key = {"stop": "stop_sequences"}.get(name, name)
        return body.get(key)

    def system_texts(self, body: dict[str, Any]) -> list[str]:
        system = body.get("system") or []
        return [system] if isinstance(system, str) else [b["text"] for b in system]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [t["name"] for t in body.get("tools", [])]

    def images(self, body: dict[str, Any]) -> list[Image]:
        out = []
        for message in body["messages"]:
            for block in _blocks(message["content"]):
                if block["type"] == "tool_result":  # images inside results (Messages passthrough)
                    out.extend(self.images({"messages": [{"content": block.get("content")}]}))
                if block["type"] != "image":
                    continue
                source = block["source"]
                if source["type"] == "url":
                    out.append(Image("url", source["url"]))
                else:
                    out.append(Image("inline", source["data"], source["media_type"]))
        return out

    def tool_calls_sent(self, body: dict[str, Any]) -> list[SentCall]:
        turn = [m for m in body["messages"] if m["role"] == "assistant"][-1]
        return [
            SentCall(b["id"], b["name"], b["input"])
            for b in turn["content"]
            if b["type"] == "tool_use"
        ]

    def tool_results_sent(self, body: dict[str, Any]) -> list[SentResult]:
        return [
            SentResult(
                b["tool_use_id"],
                None,
                _joined([c for c in _blocks(b.get("content")) if c["type"] == "text"])
                if isinstance(b.get("content"), list)
                else b.get("content", ""),
            )
            for m in body["messages"]
            if m["role"] == "user"
            for b in _blocks(m["content"])
            if b["type"] == "tool_result"
        ]


class GeminiUpstream(Upstream):
    provider = "gemini"
    model = "gemini-3-pro-preview"
    api_key = "test-key"
    signature = SIGNATURE

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix  # "" (the host root) or "/v1beta"
        # Gemini 3's rule: a replayed call must carry the thought signature it came with.
        self.fake = self.app = fg.FakeGemini(
            api_key=self.api_key, models=(self.model,), require_thought_signatures=True
        )

    def api_base(self, url: str) -> str:
        return url + self.suffix

    def expected_path(self, *, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"/v1beta/models/{self.model}:{method}"

    @staticmethod
    def _with_usage(reply: fg.Reply, usage: Usage) -> fg.Reply:
        prompt, completion = usage
        metadata = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        }
        *head, last = reply.chunks
        return replace(reply, chunks=(*head, {**last, "usageMetadata": metadata}))

    def text(
        self, text: str, *, usage: Usage = (11, 7), finish: str = "stop", stopped_at: str = ""
    ) -> None:
        reason = {"stop": "STOP", "length": "MAX_TOKENS"}[finish]
        pieces = re.findall(r"\S+\s*", text) or [text]
        self.fake.script.append(self._with_usage(fg.text_reply(*pieces, finish=reason), usage))

    def tool_calls(
        self, calls: list[tuple[str, dict[str, Any]]], *, text: str = "", usage: Usage = (11, 7)
    ) -> None:
        reply = fg.tool_reply(*calls, text=text or None, signature=SIGNATURE)
        self.fake.script.append(self._with_usage(reply, usage))

    def http_error(self, status: int, *, retry_after: str | None = None) -> None:
        names = {
            400: "INVALID_ARGUMENT",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            500: "INTERNAL",
            503: "UNAVAILABLE",
            504: "DEADLINE_EXCEEDED",
        }
        message = f"upstream says {status}"
        reply = fg.error_reply(status, message, names[status], retry_after=retry_after)
        self.fake.script.append(reply)

    def stream_error(self, text: str, message: str) -> None:
        pieces = re.findall(r"\S+\s*", text) or [text]
        reply = fg.text_reply(*pieces)
        # the error replaces the finish: drop STOP from the last chunk
        *head, last = reply.chunks
        candidate = {k: v for k, v in last["candidates"][0].items() if k != "finishReason"}
        reply = replace(reply, chunks=(*head, {"candidates": [candidate]}))
        self.fake.script.append(reply.then_error(503, message, "UNAVAILABLE"))

    @property
    def paths(self) -> list[str]:
        return [
            r.path + (f"?alt={r.query['alt']}" if "alt" in r.query else "")
            for r in self.fake.requests
        ]

    @property
    def keys(self) -> list[str | None]:
        # the header, never ?key=: a key in the URL ends up in access logs
        assert all("key" not in r.query for r in self.fake.requests)
        return [r.headers.get("x-goog-api-key") for r in self.fake.requests]

    def param(self, body: dict[str, Any], name: str) -> Any:
        key = {
            "temperature": "temperature",
            "max_tokens": "maxOutputTokens",
            "stop": "stopSequences",
            "n": "candidateCount",
        }.get(name)
        if key is None:  # no Gemini field: it can only have leaked in unchanged
            return body.get(name)
        return (body.get("generationConfig") or {}).get(key)

    def system_texts(self, body: dict[str, Any]) -> list[str]:
        return [p["text"] for p in (body.get("systemInstruction") or {}).get("parts", [])]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]

    def images(self, body: dict[str, Any]) -> list[Image]:
        out = []
        for content in body["contents"]:
            for part in content["parts"]:
                if "inlineData" in part:
                    blob = part["inlineData"]
                    out.append(Image("inline", blob["data"], blob["mimeType"]))
                elif "fileData" in part:
                    out.append(Image("url", part["fileData"]["fileUri"]))
        return out

    def tool_calls_sent(self, body: dict[str, Any]) -> list[SentCall]:
        turn = [c for c in body["contents"] if c["role"] == "model"][-1]
        return [
            SentCall(
                p["functionCall"].get("id"),
                p["functionCall"]["name"],
                p["functionCall"].get("args", {}),
                p.get("thoughtSignature"),
            )
            for p in turn["parts"]
            if "functionCall" in p
        ]

    def tool_results_sent(self, body: dict[str, Any]) -> list[SentResult]:
        out = []
        for content in body["contents"]:
            for part in content["parts"]:
                if "functionResponse" in part:
                    response = part["functionResponse"]
                    out.append(
                        SentResult(
                            response.get("id"), response["name"], response["response"]["content"]
                        )
                    )
        return out


# "gemini-v1beta": the same provider with api_base ending in /v1beta, as the
# google-genai docs and many LiteLLM configs write it.
CASES = ("openai", "anthropic", "gemini", "gemini-v1beta")


def _upstream(case: str) -> Upstream:
    if case == "openai":
        return OpenAIUpstream()
    if case == "anthropic":
        return AnthropicUpstream()
    if case == "gemini":
        return GeminiUpstream()
    if case == "gemini-v1beta":
        return GeminiUpstream("/v1beta")
    raise ValueError(case)


@dataclass
class Case:
    name: str
    upstream: Upstream
    sdk: SDK
    base: str  # the gateway's URL

    @property
    def provider(self) -> str:
        return self.upstream.provider

    @property
    def supports(self) -> Supports:
        return SUPPORT[self.upstream.provider]


def _models(upstream: Upstream, url: str) -> list[dict[str, Any]]:
    params = {
        "model": f"{upstream.provider}/{upstream.model}",
        "api_base": upstream.api_base(url),
        "api_key": upstream.api_key,
    }
    return [
        {"model_name": "m", "litellm_params": params},
        {"model_name": "m-badkey", "litellm_params": {**params, "api_key": "sk-wrong"}},
        {"model_name": "m-drop", "litellm_params": {**params, "drop_params": True}},
    ]


@cache
def _tls() -> ssl.SSLContext:
    # Loading the CA bundle costs ~25 ms; every SDK client here talks plain HTTP anyway.
    return ssl.create_default_context()


class _SDK(SDK):
    def __init__(self, base: str) -> None:
        http = openai.DefaultHttpxClient(verify=_tls())
        self.client = openai.OpenAI(
            base_url=f"{base}/v1", api_key="anything", max_retries=0, http_client=http
        )


# The image servers of these tests listen on 127.0.0.1, which image URLs may reach
# only when allowed: every remote-image test is also an end-to-end test of the allowlist.
LOOPBACK_IMAGES = {"shutdown_grace_period": 1, "image_url_allowed_networks": ["127.0.0.1/32"]}


@asynccontextmanager
async def provider_gateway(name: str, **sections: Any) -> AsyncIterator[Case]:
    """``name``'s fake on 127.0.0.1, and FeatherGate serving it as model ``m``.

    ``sections`` are more config sections; ``feathergate_settings`` defaults to
    :data:`LOOPBACK_IMAGES`.
    """
    upstream = _upstream(name)
    sections.setdefault("feathergate_settings", LOOPBACK_IMAGES)
    async with serve_asgi(upstream.app) as url:
        config = gateway_config(_models(upstream, url), **sections)
        async with run_gateway(config) as base:
            sdk = _SDK(base)
            try:
                yield Case(name, upstream, sdk, base)
            finally:
                sdk.close()


# -- a plain HTTP server for remote images -----------------------------------------------


@dataclass
class ImageServer:
    """Serves :data:`PNG` at any path, and counts the GETs."""

    hits: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        await read_body(receive)
        self.hits.append(scope["path"])
        raw = [(b"content-type", b"image/png"), (b"content-length", str(len(PNG)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": PNG})
