"""API keys as clients hold them: ``bxk_<key id>_<secret>``.

The key id (12 hex characters) names the key in listings, logs and the audit trail; the secret (32
random bytes, URL-safe base64) is what proves possession. The gateway stores only the SHA-256 of the
whole key: the secret has 256 bits of entropy, so a slow password hash would add nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "bxk_"
KEY_PATTERN = re.compile(r"^bxk_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_\-]{43})$")


class MalformedApiKey(ValueError):
    """The text is not shaped like an API key."""


def generate_api_key() -> str:
    """A new random key; the caller shows it once and stores only :func:`hash_api_key` of it."""
    return f"{PREFIX}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str:
    """The public id inside ``key``; raises :class:`MalformedApiKey` when it is not a key."""
    match = KEY_PATTERN.match(key.strip())
    if match is None:
        raise MalformedApiKey("not a BriefXAI API key (bxk_<12 hex>_<43 characters>)")
    return match.group("key_id")


def hash_api_key(key: str) -> str:
    """Hex SHA-256 of the whole key, as stored."""
    return hashlib.sha256(key.strip().encode()).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    """Whether ``key`` hashes to ``stored_hash`` (constant-time comparison)."""
    return hmac.compare_digest(hash_api_key(key), stored_hash)


def looks_like_api_key(text: str) -> bool:
    return KEY_PATTERN.match(text.strip()) is not None
