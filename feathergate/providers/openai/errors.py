"""Normalise the error bodies OpenAI-compatible servers send into OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feathergate.errors import UpstreamStatusError, type_for_status

__all__ = ["map_openai_error"]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def map_openai_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamStatusError:
    """OpenAI's ``{"error": {...}}``, vLLM's ``{"object": "error", ...}``, or plain text."""
    message = type_ = code = param = None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            message = err
        elif isinstance(err, dict):
            message = _text(err.get("message")) or _text(err.get("detail"))
            type_ = _text(err.get("type"))
            raw_code = err.get("code")
            code = str(raw_code) if isinstance(raw_code, str | int) else None
            param = _text(err.get("param"))
    if message is None:
        text = body.decode("utf-8", "replace").strip()
        message = text[:500] or f"upstream answered HTTP {status}"
    return UpstreamStatusError(
        status,
        message,
        type=type_ or type_for_status(status),
        code=code,
        param=param,
        retry_after=headers.get("retry-after"),
    )
