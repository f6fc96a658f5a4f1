"""Electronic seals (电子印章): issue, renew, suspend, reinstate and revoke them, and open
one for sealing. Each is a service function taking the session (the caller owns the
transaction) and a clock; every admin action is recorded as a `SealEvent`.

A seal belongs to one department (统一社会信用代码). A department system may use only its
own department's seals, and only with scope `seal:use` (`authorise_use`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keys.pki import CertificateChain, Pki, SealSubject
from keys.pki_models import IssuedCertificate
from keys.signer import Signer
from kit.clock import Clock, utc
from kit.identifiers import normalise_uscc
from kit.ids import new_id
from signing.errors import MalformedInput, SealForbidden, SealNotFound, SealNotUsable
from signing.models import Seal, SealEvent
from signing.trust import x5t_s256

__all__ = [
    "REVOCATION_REASONS",
    "SCOPE_SEAL_USE",
    "SEAL_TYPES",
    "SealSigner",
    "authorise_use",
    "create_seal",
    "get_seal",
    "list_seals",
    "open_seal",
    "reinstate_seal",
    "renew_seal",
    "revoke_seal",
    "seal_events",
    "seal_summary",
    "suspend_seal",
]

SCOPE_SEAL_USE = "seal:use"
#: The kinds of seal a department holds (GB/T 38540-2020 lists 公章 and 专用章 kinds).
SEAL_TYPES = ("公章", "业务专用章", "合同专用章", "财务专用章", "电子证照专用章", "行政审批专用章")
REVOCATION_REASONS = (
    "unspecified",
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
)
#: ub-common-name and ub-organization-name (RFC 5280 Appendix A): 64 characters.
_MAX_NAME = 64


@dataclass(frozen=True)
class SealSigner:
    """An open seal, ready to seal: who it is, its `Signer` (software or PKCS#11, the caller
    cannot tell) and its certificate chain up to the root."""

    seal_id: str
    seal_name: str
    seal_type: str
    purpose: str
    department_uscc: str
    department_name: str
    signer: Signer
    chain: CertificateChain

    @property
    def kid(self) -> str:
        return x5t_s256(self.chain.leaf)


def _text(value: str, what: str, limit: int = _MAX_NAME) -> str:
    text = " ".join(value.split())
    if not text:
        raise MalformedInput(f"{what} is required")
    if len(text) > limit:
        raise MalformedInput(f"{what} is longer than {limit} characters")
    return text


def _record(
    session: Session, seal: Seal, event: str, actor: str, at: datetime, **detail: Any
) -> None:
    session.add(
        SealEvent(id=new_id(), seal_id=seal.id, event=event, actor=actor, at=at, detail=detail)
    )


def get_seal(session: Session, seal_id: str) -> Seal:
    seal = session.get(Seal, seal_id)
    if seal is None:
        raise SealNotFound("no such seal", detail=seal_id)
    return seal


def list_seals(
    session: Session, *, department_uscc: str | None = None, status: str | None = None
) -> list[Seal]:
    query = select(Seal).order_by(Seal.department_uscc, Seal.created_at)
    if department_uscc is not None:
        query = query.where(Seal.department_uscc == department_uscc)
    if status is not None:
        query = query.where(Seal.status == status)
    return list(session.execute(query).scalars())


def seal_events(session: Session, seal_id: str) -> list[SealEvent]:
    return list(
        session.execute(
            select(SealEvent).where(SealEvent.seal_id == seal_id).order_by(SealEvent.at)
        ).scalars()
    )


def create_seal(
    session: Session,
    clock: Clock,
    pki: Pki,
    *,
    department_uscc: str,
    department_name: str,
    name: str,
    seal_type: str,
    purpose: str | None = None,
    backend: str = "software",
    alg: str = "ES256",
    lifetime: timedelta | None = None,
    actor: str = "system",
) -> Seal:
    """Issue a seal: a new key in `backend` and a seal certificate from the issuing CA."""
    now = clock.now()
    uscc = normalise_uscc(department_uscc)
    department_name = _text(department_name, "the department name")
    name = _text(name, "the seal name")
    seal_type = _text(seal_type, "the seal type", 32)
    if seal_type not in SEAL_TYPES:
        raise MalformedInput(f"unknown seal type; one of {', '.join(SEAL_TYPES)}")
    purpose = (
        _text(purpose, "the purpose", 32) if purpose else ("" if seal_type == "公章" else seal_type)
    )
    if alg not in ("ES256", "PS256"):
        raise MalformedInput("a seal signs with ES256 or PS256")
    seal_id = new_id()
    cert = pki.issue_seal_certificate(
        session,
        now,
        subject=SealSubject(seal_id, name, seal_type, uscc, department_name),
        alg=alg,
        backend=backend,
        lifetime=lifetime,
    )
    seal = Seal(
        id=seal_id,
        name=name,
        seal_type=seal_type,
        purpose=purpose,
        department_uscc=uscc,
        department_name=department_name,
        alg=alg,
        key_backend=backend,
        key_id=cert.key_id,
        certificate_serial=cert.serial,
        not_before=cert.not_before,
        not_after=cert.not_after,
        status="active",
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(seal)
    session.flush()
    _record(session, seal, "seal.created", actor, now, certificate=cert.serial, backend=backend)
    session.flush()
    return seal


def renew_seal(
    session: Session,
    clock: Clock,
    pki: Pki,
    seal_id: str,
    *,
    lifetime: timedelta | None = None,
    actor: str = "system",
) -> Seal:
    """A new key and certificate for an active seal. The old key is destroyed; the old
    certificate stays valid so documents sealed with it still verify."""
    now = clock.now()
    seal = get_seal(session, seal_id)
    if seal.status != "active":
        raise SealNotUsable(f"a {seal.status} seal cannot be renewed")
    old_key = pki.key_row(session, seal.key_id)
    cert = pki.issue_seal_certificate(
        session,
        now,
        subject=SealSubject(
            seal.id, seal.name, seal.seal_type, seal.department_uscc, seal.department_name
        ),
        alg=seal.alg,
        backend=seal.key_backend,
        lifetime=lifetime,
    )
    pki.keys.destroy(old_key)
    previous = seal.certificate_serial
    seal.key_id = cert.key_id
    seal.certificate_serial = cert.serial
    seal.not_before = cert.not_before
    seal.not_after = cert.not_after
    seal.version += 1
    seal.updated_at = now
    _record(session, seal, "seal.renewed", actor, now, certificate=cert.serial, previous=previous)
    session.flush()
    return seal


def suspend_seal(
    session: Session,
    clock: Clock,
    pki: Pki,
    seal_id: str,
    *,
    actor: str = "system",
    reason: str = "",
) -> Seal:
    """Suspend: the certificate goes on the CRL as `certificateHold` (RFC 5280 §5.3.1),
    so verifiers answer TRY_LATER until it is reinstated."""
    now = clock.now()
    seal = get_seal(session, seal_id)
    if seal.status != "active":
        raise SealNotUsable(f"a {seal.status} seal cannot be suspended")
    pki.revoke(session, seal.certificate_serial, now, reason="certificate_hold")
    seal.status = "suspended"
    seal.updated_at = now
    _record(session, seal, "seal.suspended", actor, now, reason=reason)
    session.flush()
    return seal


def reinstate_seal(
    session: Session, clock: Clock, pki: Pki, seal_id: str, *, actor: str = "system"
) -> Seal:
    now = clock.now()
    seal = get_seal(session, seal_id)
    if seal.status != "suspended":
        raise SealNotUsable("only a suspended seal can be reinstated")
    pki.release_hold(session, seal.certificate_serial, now)
    seal.status = "active"
    seal.updated_at = now
    _record(session, seal, "seal.reinstated", actor, now)
    session.flush()
    return seal


def revoke_seal(
    session: Session,
    clock: Clock,
    pki: Pki,
    seal_id: str,
    *,
    reason: str = "cessation_of_operation",
    actor: str = "system",
) -> Seal:
    """Revoke for good: every certificate the seal ever had goes on the CRL (re-signed at
    once) and its key is destroyed."""
    if reason not in REVOCATION_REASONS:
        raise MalformedInput(f"unknown reason; one of {', '.join(REVOCATION_REASONS)}")
    now = clock.now()
    seal = get_seal(session, seal_id)
    if seal.status == "revoked":
        return seal
    certificates = session.execute(
        select(IssuedCertificate).where(
            IssuedCertificate.holder == seal.id, IssuedCertificate.purpose == "seal"
        )
    ).scalars()
    for cert in list(certificates):
        if cert.status != "revoked":  # a hold becomes a final revocation
            pki.revoke(session, cert.serial, now, reason=reason)
    pki.keys.destroy(pki.key_row(session, seal.key_id))
    seal.status = "revoked"
    seal.revoked_at = now
    seal.revocation_reason = reason
    seal.updated_at = now
    _record(session, seal, "seal.revoked", actor, now, reason=reason)
    session.flush()
    return seal


def authorise_use(seal: Seal, *, department_uscc: str | None, scopes: Collection[str]) -> None:
    """A department system may seal only with its own department's seals, with scope
    `seal:use`. `department_uscc` is the client's (`Client.department_uscc`)."""
    if SCOPE_SEAL_USE not in scopes:
        raise SealForbidden("scope seal:use is required to seal")
    if department_uscc is None or department_uscc.upper() != seal.department_uscc:
        raise SealForbidden(
            "this seal belongs to another department",
            detail=f"client department {department_uscc}, seal {seal.id}",
        )


def open_seal(
    session: Session,
    pki: Pki,
    seal_id: str,
    now: datetime,
    *,
    department_uscc: str | None = None,
    scopes: Collection[str] | None = None,
) -> SealSigner:
    """Open an active seal for sealing at `now`. With `scopes` given (a client request),
    the client must own it (`authorise_use`); admin tools pass no scopes."""
    seal = get_seal(session, seal_id)
    if scopes is not None:
        authorise_use(seal, department_uscc=department_uscc, scopes=scopes)
    if seal.status != "active":
        raise SealNotUsable(f"the seal is {seal.status}")
    if not utc(seal.not_before) <= now <= utc(seal.not_after):
        raise SealNotUsable("the seal is outside its validity period")
    cert_row = pki.certificate(session, seal.certificate_serial)
    chain = pki.chain_for(session, cert_row)
    signer = pki.keys.signer(pki.key_row(session, seal.key_id), kid=x5t_s256(chain.leaf))
    return SealSigner(
        seal_id=seal.id,
        seal_name=seal.name,
        seal_type=seal.seal_type,
        purpose=seal.purpose,
        department_uscc=seal.department_uscc,
        department_name=seal.department_name,
        signer=signer,
        chain=chain,
    )


def seal_summary(seal: Seal) -> dict[str, Any]:
    """The public description of a seal (JSON)."""
    return {
        "id": seal.id,
        "name": seal.name,
        "type": seal.seal_type,
        "purpose": seal.purpose,
        "department_uscc": seal.department_uscc,
        "department_name": seal.department_name,
        "alg": seal.alg,
        "key_backend": seal.key_backend,
        "certificate_serial": seal.certificate_serial,
        "not_before": utc(seal.not_before).isoformat(),
        "not_after": utc(seal.not_after).isoformat(),
        "status": seal.status,
        "version": seal.version,
        "created_at": utc(seal.created_at).isoformat(),
        "revoked_at": utc(seal.revoked_at).isoformat() if seal.revoked_at else None,
        "revocation_reason": seal.revocation_reason,
    }
