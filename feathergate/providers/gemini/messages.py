"""OpenAI ``messages`` -> Gemini ``contents`` and ``systemInstruction``.

The rules (PROTOCOLS.md §4.2 "Message conversion", §4.8.2-5, §4.8.9):

* ``system``/``developer`` messages are hoisted into ``systemInstruction``,
  one part each, wherever they stand (as litellm does; Gemini has no
  mid-conversation system turn). A request with nothing else sends them as
  the user turn instead, since Gemini rejects empty ``contents``.
* ``assistant`` is ``model``; consecutive turns of one role are merged.
* Empty text is skipped and a message left without parts is dropped:
  Gemini rejects empty text parts and empty ``parts``.
* A run of ``tool`` messages becomes ONE user content with exactly one
  ``functionResponse`` per call of the assistant message before it, in call
  order, named from that message (Gemini matches by name and position). It
  is never merged with user text, because Gemini counts that content's parts
  against the calls. Unanswered or unknown ids are a 400 here, as OpenAI
  itself answers, rather than Gemini's less specific one.
* ``functionCall``/``functionResponse`` ids are not sent: an id from another
  provider's history is rejected, and Gemini pairs calls by position.
* Remote images arrive pre-downloaded in ``assets`` (the relay fetches what
  :func:`remote_image_urls` lists), because Gemini takes only inline data
  or Files-API URIs.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from feathergate import clientjson
from feathergate.errors import InvalidRequest
from feathergate.providers.base import Asset
from feathergate.providers.gemini.ids import split_tool_call_id
from feathergate.providers.gemini.wire import Blob, Content, Part

__all__ = ["convert_messages", "remote_image_urls"]

_SYSTEM_ROLES = ("system", "developer")
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3"}


def remote_image_urls(body: Mapping[str, Any]) -> list[str]:
    """The http(s) ``image_url`` URLs in ``body``, first occurrence first."""
    urls: dict[str, None] = {}
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else []:
            image = part.get("image_url") if isinstance(part, Mapping) else None
            url = image.get("url") if isinstance(image, Mapping) else image
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                urls[url] = None
    return list(urls)


def convert_messages(
    messages: Any, assets: Mapping[str, Asset]
) -> tuple[list[Content], Content | None]:
    """``(contents, systemInstruction or None)``; raises :class:`InvalidRequest`."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty array")
    builder = _Builder(assets)
    i = 0
    while i < len(messages):
        role = _role(messages[i], i)
        if role != "tool":
            builder.message(messages[i], role, i)
            i += 1
            continue
        run: list[tuple[int, Mapping[str, Any]]] = []
        while i < len(messages) and _role(messages[i], i) in ("tool", *_SYSTEM_ROLES):
            if _role(messages[i], i) == "tool":
                run.append((i, messages[i]))
            else:
                builder.message(messages[i], _role(messages[i], i), i)
            i += 1
        builder.tool_results(run)
    if not builder.contents and builder.system:
        return [{"role": "user", "parts": builder.system}], None
    if not builder.contents:
        raise _bad("messages have no content to send")
    return builder.contents, {"parts": builder.system} if builder.system else None


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="messages")


def _role(message: Any, i: int) -> str:
    role = message.get("role") if isinstance(message, Mapping) else None
    if role not in ("user", "assistant", "tool", *_SYSTEM_ROLES):
        raise _bad(f"messages[{i}].role: unsupported role {role!r}")
    return str(role)


class _Builder:
    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self.assets = assets
        self.contents: list[Content] = []
        self.system: list[Part] = []
        # (tool_call_id, name) of the latest assistant message, for the tool run after it.
        self.calls: list[tuple[str, str]] = []

    def message(self, message: Mapping[str, Any], role: str, i: int) -> None:
        if role in _SYSTEM_ROLES:
            text = _text(message.get("content"), f"messages[{i}].content")
            if text:
                self.system.append({"text": text})
        elif role == "user":
            self.calls = []
            self._add("user", _user_parts(message.get("content"), self.assets, i))
        else:
            self._add("model", self._assistant_parts(message, i))

    def _assistant_parts(self, message: Mapping[str, Any], i: int) -> list[Part]:
        where = f"messages[{i}]"
        text = _text(message.get("content"), f"{where}.content", refusal=True)
        parts: list[Part] = [{"text": text}] if text else []
        self.calls = []
        tool_calls = message.get("tool_calls") or []
        if not isinstance(tool_calls, list):
            raise _bad(f"{where}.tool_calls must be an array")
        for k, call in enumerate(tool_calls):
            fn = call.get("function") if isinstance(call, Mapping) else None
            call_id = call.get("id") if isinstance(call, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise _bad(f"{where}.tool_calls[{k}].function.name is required")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}.tool_calls[{k}].id is required")
            args = _arguments(fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments")
            part: Part = {"functionCall": {"name": fn["name"], "args": args}}
            signature = split_tool_call_id(call_id)[1]
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
            self.calls.append((call_id, fn["name"]))
        return parts

    def tool_results(self, run: list[tuple[int, Mapping[str, Any]]]) -> None:
        first = run[0][0]
        if not self.calls:
            raise _bad(
                f"messages[{first}]: a tool message must follow an assistant message "
                "with tool_calls"
            )
        ids = [call_id for call_id, _ in self.calls]
        bases = [split_tool_call_id(call_id)[0] for call_id in ids]
        answers: dict[int, Part] = {}
        for i, message in run:
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str):
                raise _bad(f"messages[{i}].tool_call_id is required")
            if tool_call_id in ids:
                position = ids.index(tool_call_id)
            elif split_tool_call_id(tool_call_id)[0] in bases:
                position = bases.index(split_tool_call_id(tool_call_id)[0])
            else:
                raise _bad(
                    f"messages[{i}].tool_call_id {tool_call_id!r} answers no tool call "
                    "of the preceding assistant message"
                )
            if position in answers:
                raise _bad(f"messages[{i}]: tool call {tool_call_id!r} is answered twice")
            where = f"messages[{i}].content"
            response = _response(_text(message.get("content"), where), where)
            answers[position] = {
                "functionResponse": {"name": self.calls[position][1], "response": response}
            }
        missing = [ids[p] for p in range(len(ids)) if p not in answers]
        if missing:
            raise _bad(
                f"messages[{first}]: tool calls without a tool message: {', '.join(missing)}"
            )
        self.contents.append({"role": "user", "parts": [answers[p] for p in sorted(answers)]})
        self.calls = []

    def _add(self, role: str, parts: list[Part]) -> None:
        if not parts:
            return
        last = self.contents[-1] if self.contents else None
        if last is not None and last.get("role") == role and not _is_results(last):
            last["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})


def _is_results(content: Content) -> bool:
    # Results turns hold only functionResponse parts and are never merged
    # into, so the first part tells; looking at every part made a long run of
    # same-role messages quadratic.
    return "functionResponse" in content["parts"][0]


def _text(content: Any, where: str, *, refusal: bool = False) -> str:
    """The text of a text-only content (system, assistant, tool)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or an array of parts")
    texts: list[str] = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and refusal and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise _bad(f"{where}[{k}]: unsupported part type {kind!r}")
    return "".join(texts)


def _user_parts(content: Any, assets: Mapping[str, Asset], i: int) -> list[Part]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"messages[{i}].content must be a string or an array")
    parts: list[Part] = []
    for k, item in enumerate(content):
        where = f"messages[{i}].content[{k}]"
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind == "text" and isinstance(item.get("text"), str):
            if item["text"]:
                parts.append({"text": item["text"]})
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            parts.append({"inlineData": _image(url, assets, where)})
        elif kind == "input_audio" and isinstance(item.get("input_audio"), Mapping):
            audio = item["input_audio"]
            mime = _AUDIO_MIME.get(str(audio.get("format")), f"audio/{audio.get('format')}")
            parts.append({"inlineData": {"mimeType": mime, "data": str(audio.get("data", ""))}})
        elif kind == "file" and isinstance(item.get("file"), Mapping):
            parts.append({"inlineData": _file(item["file"], where)})
        else:
            raise _bad(f"{where}: unsupported part type {kind!r}")
    return parts


def _image(url: Any, assets: Mapping[str, Asset], where: str) -> Blob:
    if isinstance(url, str) and url.startswith("data:"):
        return _data_uri(url, where)
    if isinstance(url, str) and url in assets:
        asset = assets[url]
        return {"mimeType": asset.mime_type, "data": base64.b64encode(asset.data).decode("ascii")}
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        raise _bad(f"{where}: image {url[:200]} was not downloaded")
    raise _bad(f"{where}: image_url.url must be a data: or http(s) URL")


def _data_uri(url: str, where: str) -> Blob:
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma:
        raise _bad(f"{where}: malformed data: URI")
    mime, *params = header.split(";")
    if "base64" in params:
        data = payload.strip()
    else:
        data = base64.b64encode(unquote_to_bytes(payload)).decode("ascii")
    return {"mimeType": mime or "text/plain", "data": data}


def _file(file: Mapping[str, Any], where: str) -> Blob:
    data = file.get("file_data")
    if not isinstance(data, str) or not data:
        raise _bad(f"{where}: only inline file_data is supported by gemini (not file_id)")
    if data.startswith("data:"):
        return _data_uri(data, where)
    guessed = mimetypes.guess_type(str(file.get("filename") or ""))[0]
    return {"mimeType": guessed or "application/pdf", "data": data}


def _arguments(arguments: Any, param: str) -> dict[str, Any]:
    """``JSON.parse(arguments)``; ``""`` or anything that is not an object is ``{}``.

    A model can emit malformed arguments that the client echoes back; failing
    the replay would make the conversation unrecoverable. Arguments nested too
    deeply to translate are a 400 naming ``param``: no model produced them.
    """
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = clientjson.loads(arguments, param)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _response(text: str, param: str) -> dict[str, Any]:
    """``functionResponse.response`` must be an object: objects pass, anything else is wrapped."""
    try:
        parsed = clientjson.loads(text, param)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"content": text}
