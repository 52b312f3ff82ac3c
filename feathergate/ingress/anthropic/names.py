"""Tool names and tool-use ids across the Messages API and Chat Completions.

Both mappings are pure functions of the request, so any gateway replica
serves the next turn without server state.

* **Names.** Anthropic allows 128 characters (Claude Code's MCP tools are
  ``mcp__server__tool`` and run long); OpenAI and Gemini allow 64, and Gemini
  wants a letter or ``_`` first. A name that does not fit becomes its first 55
  usable characters, ``_`` and 8 hex digits of its SHA-256 (LiteLLM's scheme),
  and is mapped back in answers, streamed ``content_block_start`` included.
* **Ids.** A ``tool_use.id`` must match ``^[a-zA-Z0-9_-]+$`` (Claude Code
  checks it). Upstream ids that do not (``functions.Bash:0``, Gemini ids that
  carry a base64 thought signature) are sent as :data:`ID_MARK` + their
  URL-safe base64, and decoded on the way back up, so the upstream gets its
  own id, signature included, in the next turn.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

__all__ = ["ID_MARK", "chat_tool_id", "message_tool_id", "short_tool_name"]

ID_MARK = "fgx_"
_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_UNUSABLE = re.compile(r"[^A-Za-z0-9_-]")


def short_tool_name(name: str) -> str:
    if _NAME_OK.fullmatch(name):
        return name
    head = _UNUSABLE.sub("_", name)
    if not head[:1].isalpha() and head[:1] != "_":
        head = "_" + head
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{head[:55]}_{digest}"


def message_tool_id(upstream_id: str) -> str:
    """An upstream's tool-call id as a valid ``tool_use.id``."""
    if _ID_OK.fullmatch(upstream_id) and not upstream_id.startswith(ID_MARK):
        return upstream_id
    encoded = base64.urlsafe_b64encode(upstream_id.encode()).decode("ascii").rstrip("=")
    return ID_MARK + encoded


def chat_tool_id(tool_use_id: str) -> str:
    """The upstream's own id back from a ``tool_use.id`` (or ``tool_use_id``)."""
    if not tool_use_id.startswith(ID_MARK):
        return tool_use_id
    encoded = tool_use_id[len(ID_MARK) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return tool_use_id  # not one of ours after all
