"""A strict fake of Google's Gemini API (generativelanguage v1beta), as a raw ASGI app.

It answers from a script and rejects, with Google's error bodies, what the
real API rejects (PROTOCOLS.md §3): a missing or wrong key, roles other than
user/model, empty contents/parts/text, function responses that do not match
the calls before them, unknown fields (schema keywords such as
``additionalProperties``, ``$ref``, ``const`` included), type arrays, more than
5 stop sequences, unknown models. It is stricter than Google in one way:
only camelCase field names are accepted, so a translator cannot drift.

    fake = FakeGemini()                                # key "test-key"
    fake.script += [text_reply("Hel", "lo"), tool_reply(("get_weather", {"city": "Paris"}))]
    async with serve_asgi(fake) as base: ...           # api_base=base
    fake.requests[-1].body                             # what the gateway sent

An exhausted script answers ``text_reply("Hello from the fake.")``.

``batchEmbedContents`` (:mod:`tests.fakes.gemini_embeddings`) serves
``embedding_models``, whose full size is ``embedding_size`` (small, so tests
stay fast). A batch holding a text named in ``embed_errors`` gets that error
reply (once ``embed_errors_gate`` is set, if there is one); with
``embed_gate`` set, every other batch waits for it before answering (and is
sent to ``held``, when set), and a batch whose caller hangs up meanwhile sets
its record's ``gone``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

import trio

from tests.fakes.asgi import lifespan
from tests.fakes.gemini_embeddings import check_batch, embed_batch
from tests.fakes.gemini_rules import Rejection, check_call, check_identity, google_error

__all__ = [
    "FakeGemini",
    "Recorded",
    "Reply",
    "blocked_reply",
    "count_tokens",
    "error_reply",
    "google_error",
    "merge_chunks",
    "safety_reply",
    "text_reply",
    "thought_reply",
    "tool_reply",
]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ROUTE = re.compile(
    r"^/(v1beta|v1)/models/([^/:]+)"
    r":(generateContent|streamGenerateContent|countTokens|batchEmbedContents)$"
)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``chunks`` are GenerateContentResponse objects, one per SSE event.

    Non-streamed calls get the chunks merged (:func:`merge_chunks`). ``usageMetadata``,
    ``responseId`` and ``modelVersion`` are filled in when a chunk lacks them. With
    ``status != 200`` the call is answered with ``error`` (a :func:`google_error`) instead;
    ``stream_error`` is sent as ``data: {"error": ...}`` after the chunks (a non-streamed
    call gets it as an HTTP error). ``delay`` seconds pass before each event; with
    ``gate``, the stream waits on it after ``after_events`` events.
    """

    chunks: tuple[Message, ...] = ()
    status: int = 200
    error: Message | None = None
    stream_error: Message | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    gate: trio.Event | None = None  # with ``after_events``: stream that many events, then wait
    after_events: int | None = None

    def then_error(
        self,
        code: int = 503,
        message: str = "The model is overloaded.",
        status: str = "UNAVAILABLE",
    ) -> Reply:
        return replace(self, stream_error=google_error(code, message, status))


def _candidate(parts: list[Message] | None, finish: str | None = None, index: int = 0) -> Message:
    candidate: Message = {"content": {"parts": parts, "role": "model"}} if parts else {}
    if finish:
        candidate["finishReason"] = finish
    return {**candidate, "index": index}


def text_reply(*pieces: str, finish: str = "STOP") -> Reply:
    """Text streamed one piece per chunk; ``finish`` on the last (STOP, MAX_TOKENS, SAFETY...)."""
    pieces = pieces or ("Hello from the fake.",)
    chunks = [_candidate([{"text": p}]) for p in pieces]
    chunks[-1]["finishReason"] = finish
    return Reply(tuple({"candidates": [c]} for c in chunks))


def tool_reply(
    *calls: tuple[str, Message], text: str | None = None, signature: str | None = None
) -> Reply:
    """Whole ``functionCall`` parts in one chunk (after an optional text chunk).

    ``signature`` goes on the first call only, as Gemini does for parallel calls.
    """
    parts: list[Message] = [{"functionCall": {"name": name, "args": args}} for name, args in calls]
    if signature and parts:
        parts[0]["thoughtSignature"] = signature
    chunks = ([{"candidates": [_candidate([{"text": text}])]}] if text else []) + [
        {"candidates": [_candidate(parts, "STOP")]}
    ]
    return Reply(tuple(chunks))


def thought_reply(thought: str, *pieces: str) -> Reply:
    first = {"candidates": [_candidate([{"text": thought, "thought": True}])]}
    return Reply((first, *text_reply(*pieces).chunks))


def blocked_reply(reason: str = "SAFETY") -> Reply:
    """The prompt itself was blocked: HTTP 200, ``promptFeedback`` and no candidates."""
    return Reply(({"promptFeedback": {"blockReason": reason, "safetyRatings": []}},))


def safety_reply(*pieces: str) -> Reply:
    """A candidate that stops with SAFETY and no content, after optional text chunks."""
    texts = [{"candidates": [_candidate([{"text": p}])]} for p in pieces]
    return Reply((*texts, {"candidates": [_candidate(None, "SAFETY")]}))


def error_reply(
    code: int,
    message: str,
    status: str,
    *,
    details: Iterable[Message] = (),
    retry_after: str | None = None,
) -> Reply:
    headers = (("retry-after", retry_after),) if retry_after else ()
    return Reply(status=code, error=google_error(code, message, status, details), headers=headers)


def merge_chunks(chunks: Iterable[Message]) -> Message:
    """What ``generateContent`` returns for the same answer: parts joined per candidate."""
    candidates: dict[int, Message] = {}
    tail: Message = {}
    for chunk in chunks:
        for key in ("promptFeedback", "usageMetadata", "modelVersion", "responseId"):
            if key in chunk:
                tail[key] = chunk[key]
        for position, candidate in enumerate(chunk.get("candidates", [])):
            index = candidate.get("index", position)
            target = candidates.setdefault(index, {})
            for part in candidate.get("content", {}).get("parts", []):
                parts = target.setdefault("content", {"parts": [], "role": "model"})["parts"]
                last = parts[-1] if parts else {}
                if _joinable(last, part):
                    parts[-1] = {**last, "text": last["text"] + part["text"]}
                else:
                    parts.append(dict(part))
            for key in ("finishReason", "safetyRatings"):
                if key in candidate:
                    target[key] = candidate[key]
            target["index"] = index
    merged: Message = (
        {"candidates": [candidates[i] for i in sorted(candidates)]} if candidates else {}
    )
    return {**merged, **tail}


def _joinable(last: Message, part: Message) -> bool:
    return (
        "text" in last
        and "text" in part
        and last.get("thought") == part.get("thought")
        and "thoughtSignature" not in last
        and "thoughtSignature" not in part
    )


def count_tokens(request: Message) -> int:
    """The fake's ``totalTokens`` for a GenerateContentRequest (without ``model``)."""
    return max(1, len(json.dumps(request)) // 16)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON
    disconnected: bool = False  # the client went away mid-stream
    gone: trio.Event = field(default_factory=trio.Event)  # set when a held batch's caller left


@dataclass
class FakeGemini:
    """The ASGI app. Serve it with ``tests.support.servers.serve_asgi``.

    ``script`` is consumed one reply per accepted call; ``requests`` records every
    call, refused ones included. With ``require_thought_signatures`` (Gemini 3), a
    replayed model turn's first ``functionCall`` must carry a signature this fake
    issued (script one with ``tool_reply(..., signature=...)``) or Google's
    ``skip_thought_signature_validator``.
    """

    api_key: str = "test-key"
    models: tuple[str, ...] = ("gemini-2.5-flash",)
    require_thought_signatures: bool = False  # Gemini 3's rule (PROTOCOLS.md §4.8.9)
    script: list[Reply] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    issued_signatures: set[str] = field(default_factory=set)
    embedding_models: tuple[str, ...] = ("gemini-embedding-001",)
    embedding_size: int = 8  # the real gemini-embedding-001's is 3072
    embed_errors: dict[str, Reply] = field(default_factory=dict)
    embed_gate: trio.Event | None = None
    embed_errors_gate: trio.Event | None = None  # the embed_errors replies wait for it
    held: trio.MemorySendChannel[Recorded] | None = None  # told of each batch the gate holds

    async def _get_model(self, send: Send, path: str, key: str | None) -> None:
        """``GET models/{model}`` (404 for one it does not serve) and ``GET models``."""
        route = _GET.match(path)
        if route is None:
            await _respond(send, 404, b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>")
        elif key != self.api_key:
            status = {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}
            await _respond(send, 400, json.dumps({"error": status}).encode())
        elif route.group(2) is None:
            listing = {"models": [_model_card(m) for m in self.models]}
            await _respond(send, 200, json.dumps(listing).encode())
        elif route.group(2) not in self.models:
            missing = f"models/{route.group(2)} is not found for API version {route.group(1)}"
            status = {"code": 404, "message": missing, "status": "NOT_FOUND"}
            await _respond(send, 404, json.dumps({"error": status}).encode())
        else:
            await _respond(send, 200, json.dumps(_model_card(route.group(2))).encode())

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        query = dict(parse_qsl(scope["query_string"].decode()))
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = Recorded(scope["method"], scope["path"], query, headers, body)
        self.requests.append(record)
        if scope["method"] == "GET":
            await self._get_model(send, scope["path"], headers.get("x-goog-api-key"))
            return
        route = _ROUTE.match(scope["path"])
        if route is None or scope["method"] != "POST":
            page = b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>"
            await _respond(send, 404, page, "text/html; charset=UTF-8")
            return
        version, model, method = route.groups()
        signatures = self.issued_signatures if self.require_thought_signatures else None
        key = headers.get("x-goog-api-key") or query.get("key")
        if method == "countTokens":
            await self._count_tokens(send, version, model, key, body)
            return
        if method == "batchEmbedContents":
            await self._embed(send, receive, version, model, key, record)
            return
        try:
            check_call(
                version,
                model,
                key,
                body,
                api_key=self.api_key,
                models=self.models,
                signatures=signatures,
            )
            reply = self.script.pop(0) if self.script else text_reply()
        except Rejection as rejection:
            reply = Reply(status=rejection.error["error"]["code"], error=rejection.error)
        if reply.status != 200:
            error_body = json.dumps(reply.error, indent=2).encode()
            await _respond(send, reply.status, error_body, headers=reply.headers)
            return
        chunks = self._annotate(reply, model, body, len(self.requests))
        if method == "generateContent":
            if reply.stream_error is not None:
                code = reply.stream_error["error"]["code"]
                await _respond(send, code, json.dumps(reply.stream_error).encode())
            else:
                await _respond(send, 200, json.dumps(merge_chunks(chunks), indent=2).encode())
            return
        events = [*chunks, *([reply.stream_error] if reply.stream_error else [])]
        await self._stream(send, receive, events, reply, query.get("alt") == "sse", record)

    async def _count_tokens(
        self, send: Send, version: str, model: str, key: str | None, body: Any
    ) -> None:
        """``countTokens``: ``{"contents"}`` or ``{"generateContentRequest"}`` (model inside)."""
        try:
            if not isinstance(body, dict) or set(body) - {"contents", "generateContentRequest"}:
                raise Rejection(
                    "Invalid JSON payload received. Unknown name in CountTokensRequest."
                )
            inner = body.get("generateContentRequest", {"contents": body.get("contents")})
            if "generateContentRequest" in body:
                if not isinstance(inner, dict) or inner.get("model") != f"models/{model}":
                    raise Rejection(
                        "* CountTokensRequest.generate_content_request.model: "
                        f"must be 'models/{model}'\n"
                    )
                inner = {k: v for k, v in inner.items() if k != "model"}
            check_call(
                version,
                model,
                key,
                inner,
                api_key=self.api_key,
                models=self.models,
                signatures=None,
            )
        except Rejection as rejection:
            code = rejection.error["error"]["code"]
            await _respond(send, code, json.dumps(rejection.error).encode())
            return
        total = count_tokens(inner)
        answer = {
            "totalTokens": total,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
        }
        await _respond(send, 200, json.dumps(answer).encode())

    async def _embed(
        self,
        send: Send,
        receive: Receive,
        version: str,
        model: str,
        key: str | None,
        record: Recorded,
    ) -> None:
        try:
            check_identity(
                version,
                model,
                key,
                api_key=self.api_key,
                models=self.embedding_models,
                method="batchEmbedContents",
            )
            entries = check_batch(model, record.body, self.embedding_size)
        except Rejection as rejection:
            code = rejection.error["error"]["code"]
            await _respond(send, code, json.dumps(rejection.error).encode())
            return
        texts = {entry["content"]["parts"][0]["text"] for entry in entries}
        failure = next((r for text, r in self.embed_errors.items() if text in texts), None)
        if failure is not None:
            if self.embed_errors_gate is not None:
                await self.embed_errors_gate.wait()
            body = json.dumps(failure.error).encode()
            await _respond(send, failure.status, body, headers=failure.headers)
            return
        if self.embed_gate is not None:
            gate = self.embed_gate
            async with trio.open_nursery() as nursery:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    record.disconnected = True
                    record.gone.set()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_disconnect)
                if self.held is not None:
                    self.held.send_nowait(record)
                await gate.wait()
                nursery.cancel_scope.cancel()
            if record.disconnected:
                return
        answer = embed_batch(entries, self.embedding_size)
        await _respond(send, 200, json.dumps(answer).encode())

    def _annotate(self, reply: Reply, model: str, body: Any, n: int) -> list[Message]:
        """Fill in responseId, modelVersion and cumulative usageMetadata, as Gemini sends them."""
        prompt = max(1, len(json.dumps(body.get("contents", ""))) // 16)
        totals = {"candidatesTokenCount": 0, "thoughtsTokenCount": 0}
        out = []
        for chunk in reply.chunks:
            for candidate in chunk.get("candidates", []):
                for part in candidate.get("content", {}).get("parts", []):
                    key = "thoughtsTokenCount" if part.get("thought") else "candidatesTokenCount"
                    totals[key] += len(str(part.get("text", "")).split()) + 4 * (
                        "functionCall" in part
                    )
                    if "thoughtSignature" in part:
                        self.issued_signatures.add(part["thoughtSignature"])
            usage = {"promptTokenCount": prompt, **{k: v for k, v in totals.items() if v}}
            usage["totalTokenCount"] = prompt + sum(totals.values())
            out.append(
                {
                    "usageMetadata": usage,
                    "modelVersion": model,
                    "responseId": f"fakeResp{n:04d}",
                    **chunk,
                }
            )
        return out

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        events: list[Message],
        reply: Reply,
        sse: bool,
        record: Recorded,
    ) -> None:
        content_type = "text/event-stream" if sse else "application/json; charset=UTF-8"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                record.disconnected = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            for i, event in enumerate(events):
                if reply.gate is not None and reply.after_events == i:
                    await reply.gate.wait()
                await trio.sleep(reply.delay)
                data = json.dumps(event, separators=(",", ": ")).encode()
                if sse:  # Gemini ends SSE events with CRLF and sends no [DONE] (§3.4)
                    data = b"data: " + data + b"\r\n\r\n"
                else:  # without alt=sse: one JSON array, written as it goes
                    data = (
                        (b"[" if i == 0 else b",\r\n")
                        + data
                        + (b"]" if i == len(events) - 1 else b"")
                    )
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()


_GET = re.compile(r"^/(v1beta|v1)/models(?:/([^/:]+))?$")


def _model_card(model: str) -> dict[str, Any]:
    return {"name": f"models/{model}", "displayName": model, "supportedGenerationMethods": []}


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/json; charset=UTF-8",
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    raw_headers = [(b"content-type", content_type.encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
