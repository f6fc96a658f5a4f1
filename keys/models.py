"""Tables of `keys/`: signing keys and wrapped application secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import Base, UtcDateTime


class SigningKey(Base):
    """A token-signing key. States: pending (published, not yet signing) → active
    (signs) → retiring (published, verifies what it signed) → retired; or revoked."""

    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(32), default="token")
    state: Mapped[str] = mapped_column(String(16), index=True)
    backend: Mapped[str] = mapped_column(String(16), default="software")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    wrapped_private: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    activate_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retiring_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    retire_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class WrappedSecret(Base):
    """A random application secret (HMAC and field-encryption keys), wrapped by the KEK."""

    __tablename__ = "wrapped_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
