"""Tables of `signing/`: electronic seals and the record of every admin action on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import Base, UtcDateTime


class Seal(Base):
    """An electronic seal (电子印章) of one department. `certificate_serial` and `key_id`
    name its current certificate and key (`keys.pki_models`); a renewal replaces both and
    bumps `version`. Status: active → suspended ⇄ active; any → revoked (final)."""

    __tablename__ = "seal"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    seal_type: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(64), default="")
    department_uscc: Mapped[str] = mapped_column(String(18), index=True)
    department_name: Mapped[str] = mapped_column(String(128))
    alg: Mapped[str] = mapped_column(String(16))
    key_backend: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(ForeignKey("pki_key.id"))
    certificate_serial: Mapped[str] = mapped_column(ForeignKey("pki_certificate.serial"))
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class SealEvent(Base):
    """One admin action on a seal (`seal.created`, `seal.renewed`, `seal.suspended`,
    `seal.reinstated`, `seal.revoked`), with who did it and why."""

    __tablename__ = "seal_event"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seal_id: Mapped[str] = mapped_column(ForeignKey("seal.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
