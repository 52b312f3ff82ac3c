"""Gemini's ``batchEmbedContents`` for the strict fake (INGRESS.md §2).

What it refuses, with Google's messages: more than 100 requests in one batch,
an entry whose ``model`` is not the URL's, an entry without exactly one text
part (the fake's embedding models are text models: several parts would be
one fused vector), fields a ``EmbedContentRequest`` does not have (camelCase
only, like the rest of the fake), an unknown ``taskType``, and an
``outputDimensionality`` out of 1..full size. The answer is
``{"embeddings": [{"values": [...]}]}`` in request order, with no usage, like
Gemini's; truncated vectors are *not* renormalized, like Gemini's.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from tests.fakes.gemini_rules import Rejection

__all__ = ["MAX_BATCH", "check_batch", "embed_batch", "gemini_vector"]

MAX_BATCH = 100
_ENTRY_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
_TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
        "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)  # fmt: skip


def gemini_vector(text: str, dimensions: int) -> list[float]:
    """The fake's full-size embedding of ``text``: a unit vector drawn from its hash."""
    raw = []
    for i in range(dimensions):
        block = hashlib.sha256(f"{i}:{text}".encode()).digest()
        raw.append(int.from_bytes(block[:4], "little") / 2**31 - 1.0)
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def check_batch(model: str, body: Any, full_size: int) -> list[dict[str, Any]]:
    """The batch's entries, or :class:`Rejection` as Gemini would refuse them."""
    if not isinstance(body, dict) or set(body) != {"requests"}:
        raise Rejection("Invalid JSON payload received. Unknown name in BatchEmbedContentsRequest.")
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        raise Rejection("* BatchEmbedContentsRequest.requests: must not be empty\n")
    if len(requests) > MAX_BATCH:
        raise Rejection(
            f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one "
            "batch\n"
        )
    for i, entry in enumerate(requests):
        where = f"BatchEmbedContentsRequest.requests[{i}]"
        if not isinstance(entry, dict):
            raise Rejection(f"Invalid JSON payload received. Expected an object at '{where}'.")
        unknown = sorted(set(entry) - _ENTRY_FIELDS)
        if unknown:
            raise Rejection(
                f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                f"'requests[{i}]': Cannot find field."
            )
        if entry.get("model") != f"models/{model}":
            raise Rejection(
                f"* {where}.model: the model of every request must be the batch's, "
                f"'models/{model}'\n"
            )
        parts = (entry.get("content") or {}).get("parts")
        if (
            not isinstance(parts, list)
            or len(parts) != 1
            or not isinstance(parts[0], dict)
            or not isinstance(parts[0].get("text"), str)
            or not parts[0]["text"]
        ):
            raise Rejection(f"* {where}.content: one non-empty text part is required\n")
        task = entry.get("taskType")
        if task is not None and task not in _TASK_TYPES:
            raise Rejection(
                f"Invalid value at 'requests[{i}].task_type' (type.googleapis.com/"
                f'google.ai.generativelanguage.v1beta.TaskType), "{task}"'
            )
        size = entry.get("outputDimensionality")
        if size is not None and (not isinstance(size, int) or not 1 <= size <= full_size):
            raise Rejection(f"* {where}.output_dimensionality: must be in [1, {full_size}]\n")
    return requests


def embed_batch(entries: list[dict[str, Any]], full_size: int) -> dict[str, Any]:
    """Gemini's answer: one ``values`` per entry, truncated (not renormalized) when asked."""
    embeddings = []
    for entry in entries:
        values = gemini_vector(entry["content"]["parts"][0]["text"], full_size)
        embeddings.append({"values": values[: entry.get("outputDimensionality") or full_size]})
    return {"embeddings": embeddings}
