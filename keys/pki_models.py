"""Tables of the provincial PKI: key records, certification authorities with their latest
CRL, and every certificate issued (seal and timestamp-authority certificates)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import Base, UtcDateTime


class PkiKey(Base):
    """An asymmetric key of the PKI. `backend` says where the private half lives:
    `software` (wrapped by the KEKs in `wrapped_private`), `pkcs11` (inside a token,
    found by `token_label`), `offline` (exported and removed, as for the root) or
    `destroyed` (a renewed or revoked seal's old key)."""

    __tablename__ = "pki_key"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(16))
    wrapped_private: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CertificateAuthority(Base):
    """A CA of the hierarchy (`root`, `issuing`). Its CRL is published at
    `{issuer}/pki/crl/{name}.crl` and re-signed on every revocation."""

    __tablename__ = "pki_ca"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("pki_key.id"))
    certificate_pem: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(40))
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    crl_this_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    crl_next_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IssuedCertificate(Base):
    """An end-entity certificate issued by one of our CAs. `holder` names what it belongs
    to (a seal id, or `tsa`); `status` is `valid`, `on_hold` or `revoked`."""

    __tablename__ = "pki_certificate"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    ca_name: Mapped[str] = mapped_column(ForeignKey("pki_ca.name"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("pki_key.id"))
    subject: Mapped[str] = mapped_column(Text)
    certificate_pem: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="valid", index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
