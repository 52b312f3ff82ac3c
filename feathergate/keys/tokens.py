"""Virtual keys as LiteLLM makes and stores them: ``sk-`` keys, kept only as sha256 hex."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["MIN_CUSTOM_KEY_LENGTH", "generate_key", "hash_key", "key_name", "token_of"]

MIN_CUSTOM_KEY_LENGTH = 16


def generate_key() -> str:
    """A new raw key: ``sk-`` and 16 random bytes, 25 characters (LiteLLM's shape)."""
    return "sk-" + secrets.token_urlsafe(16)


def hash_key(raw: str) -> str:
    """What the store keeps: the sha256 hex of the raw key, unsalted, as LiteLLM."""
    return hashlib.sha256(raw.encode()).hexdigest()


def token_of(key_or_hash: str) -> str:
    """LiteLLM's key-or-hash rule: ``sk-...`` is hashed, anything else is the hash."""
    return hash_key(key_or_hash) if key_or_hash.startswith("sk-") else key_or_hash


def key_name(raw: str) -> str:
    """The printable name of a key, ``sk-...<last4>``; safe for logs and errors."""
    return f"sk-...{raw[-4:]}"
