"""Identifiers and secrets.

Secrets carry a readable prefix (`tbrt_` refresh token, `tbcs_` client secret …) so a
leaked one is recognisable in logs and by secret scanners; the random part always has at
least 256 bits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid


def new_id() -> str:
    """A random, non-secret row identifier (UUID4 hex)."""
    return uuid.uuid4().hex


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    """A URL-safe random secret of `nbytes` bytes, optionally prefixed."""
    token = secrets.token_urlsafe(nbytes)
    return f"{prefix}{token}" if prefix else token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of `value` under `key`, base64url. Used for stored secrets and indexes."""
    return b64url(hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest())


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
