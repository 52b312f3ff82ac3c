"""Tool-call ids on the OpenAI side of the Gemini provider.

Gemini seldom gives a ``functionCall`` an id, but an OpenAI client needs one
to answer with ``tool_call_id``. And Gemini 3 rejects a replayed
``functionCall`` that lost its ``thoughtSignature`` (PROTOCOLS.md §4.8.9).
Both are solved without server-side state, so that any gateway replica can
serve the next turn:

* the id is a hash of the response id, the choice and the call's position,
  so a streamed and a non-streamed answer to the same response agree;
* the signature rides inside the id after ``__thought__`` (litellm's
  convention), so the client carries it back to us with the history.

Signatures are base64 (``+/=``): strip them with :func:`strip_thought_signature`
before an id goes to a provider with a stricter id alphabet.
"""

from __future__ import annotations

import hashlib

__all__ = ["SIGNATURE_MARK", "make_tool_call_id", "split_tool_call_id", "strip_thought_signature"]

SIGNATURE_MARK = "__thought__"


def make_tool_call_id(
    seed: str, choice: int, position: int, *, call_id: str | None, signature: str | None
) -> str:
    if call_id:
        base = call_id
    else:
        digest = hashlib.sha256(f"{seed}\0{choice}\0{position}".encode()).hexdigest()
        base = "call_" + digest[:24]
    return f"{base}{SIGNATURE_MARK}{signature}" if signature else base


def split_tool_call_id(tool_call_id: str) -> tuple[str, str | None]:
    """``(id without signature, signature or None)``."""
    base, _, signature = tool_call_id.partition(SIGNATURE_MARK)
    return base, signature or None


def strip_thought_signature(tool_call_id: str) -> str:
    return split_tool_call_id(tool_call_id)[0]
