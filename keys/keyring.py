"""Token-signing keys: generation, rotation without downtime, and the JWKS.

A rotation publishes the new key before it signs (`publish_ahead`, at least the JWKS
cache lifetime, so relying parties have fetched it), makes it the signer, and keeps the
old key published until every token it signed has expired (`retire_after`). Keys are
listed newest first, as Hydra does.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import KeySet
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keys.errors import KeysError
from keys.kek import KeyEncryptionKeys
from keys.models import SigningKey
from keys.signer import (
    SUPPORTED_ALGS,
    Signer,
    SoftwareSigner,
    generate_private_key,
    private_pem,
    public_jwk_of,
)
from kit.db import write_lock

PUBLISHED_STATES = ("pending", "active", "retiring")


@dataclass(frozen=True)
class RotationPolicy:
    rotate_every: timedelta = timedelta(days=90)
    publish_ahead: timedelta = timedelta(minutes=10)
    retire_after: timedelta = timedelta(hours=2)


@dataclass
class KeySnapshot:
    """What a process needs to sign and verify, loaded at once and cached."""

    signers: dict[str, Signer]
    public_jwks: dict[str, Any]
    jwks_bytes: bytes
    verify_keys: KeySet
    fingerprint: str
    next_change: datetime | None = None
    states: dict[str, str] = field(default_factory=dict)

    def signer(self, alg: str) -> Signer:
        try:
            return self.signers[alg]
        except KeyError as exc:
            raise KeysError(f"no active {alg} signing key") from exc


class KeyRing:
    def __init__(
        self,
        keks: KeyEncryptionKeys,
        policy: RotationPolicy | None = None,
        algs: tuple[str, ...] = ("ES256", "RS256"),
        purpose: str = "token",
    ) -> None:
        for alg in algs:
            if alg not in SUPPORTED_ALGS:
                raise KeysError(f"unsupported algorithm {alg}")
        self.keks = keks
        self.policy = policy or RotationPolicy()
        self.algs = algs
        self.purpose = purpose
        self._signer_cache: dict[str, Signer] = {}

    # -- lifecycle -------------------------------------------------------------------

    def _new_key(
        self, session: Session, alg: str, now: datetime, activate_at: datetime, state: str
    ) -> SigningKey:
        kid = f"{alg.lower()}-{now:%Y%m%d}-{secrets.token_hex(4)}"
        private = generate_private_key(alg)
        row = SigningKey(
            kid=kid,
            alg=alg,
            purpose=self.purpose,
            state=state,
            backend="software",
            public_jwk=public_jwk_of(private.public_key(), kid=kid, alg=alg),
            wrapped_private=self.keks.wrap(private_pem(private), aad=f"signing-key:{kid}"),
            created_at=now,
            activate_at=activate_at,
        )
        session.add(row)
        return row

    def _lock(self, session: Session) -> None:
        # Every replica (and every worker of one) runs the lifecycle on a timer.
        write_lock(session, 7310001)

    def _rows(self, session: Session, states: tuple[str, ...]) -> list[SigningKey]:
        return list(
            session.execute(
                select(SigningKey)
                .where(SigningKey.purpose == self.purpose, SigningKey.state.in_(states))
                .order_by(SigningKey.created_at.desc(), SigningKey.kid)
            ).scalars()
        )

    def ensure(self, session: Session, now: datetime) -> None:
        """First start: one active key per algorithm, signing at once."""
        self._lock(session)
        have = {row.alg for row in self._rows(session, ("active",))}
        for alg in self.algs:
            if alg not in have:
                self._new_key(session, alg, now, now, "active")
        session.flush()

    def rotate(self, session: Session, now: datetime, *, immediate: bool = False) -> list[str]:
        """Start a rotation of every algorithm: a pending key that becomes the signer after
        `publish_ahead` (at once with `immediate`, e.g. after a suspected compromise)."""
        self._lock(session)
        activate_at = now if immediate else now + self.policy.publish_ahead
        kids = [self._new_key(session, alg, now, activate_at, "pending").kid for alg in self.algs]
        session.flush()
        self.tick(session, now)
        return kids

    def tick(self, session: Session, now: datetime) -> list[tuple[str, str]]:
        """Advance the lifecycle to `now`. Returns (kid, new_state) transitions.

        Idempotent and safe to run from every replica on a schedule."""
        self._lock(session)
        changes: list[tuple[str, str]] = []
        for alg in self.algs:
            due = [
                r
                for r in self._rows(session, ("pending",))
                if r.alg == alg and r.activate_at <= now
            ]
            if due:
                newest = due[0]
                for old in self._rows(session, ("active",)):
                    if old.alg == alg and old.kid != newest.kid:
                        old.state = "retiring"
                        old.retiring_at = now
                        old.retire_at = now + self.policy.retire_after
                        changes.append((old.kid, "retiring"))
                for row in due:
                    row.state = "active" if row is newest else "retired"
                    changes.append((row.kid, row.state))
            active = [r for r in self._rows(session, ("active",)) if r.alg == alg]
            pending = [r for r in self._rows(session, ("pending",)) if r.alg == alg]
            if active and not pending and active[0].activate_at + self.policy.rotate_every <= now:
                row = self._new_key(session, alg, now, now + self.policy.publish_ahead, "pending")
                changes.append((row.kid, "pending"))
        for row in self._rows(session, ("retiring",)):
            if row.retire_at is not None and row.retire_at <= now:
                row.state = "retired"
                changes.append((row.kid, "retired"))
        session.flush()
        return changes

    def revoke(self, session: Session, kid: str) -> None:
        result = session.execute(
            update(SigningKey).where(SigningKey.kid == kid).values(state="revoked")
        )
        if not getattr(result, "rowcount", 0):
            raise KeysError(f"no key {kid}")

    def rewrap_all(self, session: Session) -> int:
        """Re-wrap every private key under the primary KEK (after `rotate-kek`)."""
        count = 0
        for row in session.execute(select(SigningKey)).scalars():
            if self.keks.needs_rewrap(row.wrapped_private):
                row.wrapped_private = self.keks.rewrap(
                    row.wrapped_private, aad=f"signing-key:{row.kid}"
                )
                count += 1
        session.flush()
        return count

    def list(self, session: Session) -> list[SigningKey]:
        return list(
            session.execute(
                select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)
            ).scalars()
        )

    # -- loading ---------------------------------------------------------------------

    def _signer(self, row: SigningKey) -> Signer:
        cached = self._signer_cache.get(row.kid)
        if cached is None:
            pem = self.keks.unwrap(row.wrapped_private, aad=f"signing-key:{row.kid}")
            cached = SoftwareSigner.from_pem(row.kid, row.alg, pem)
            self._signer_cache[row.kid] = cached
        return cached

    def load(self, session: Session) -> KeySnapshot:
        rows = self._rows(session, PUBLISHED_STATES)
        signers: dict[str, Signer] = {}
        for row in rows:
            if row.state == "active" and row.alg not in signers:
                signers[row.alg] = self._signer(row)
        jwks = {"keys": [row.public_jwk for row in rows]}
        body = json.dumps(jwks, separators=(",", ":")).encode()
        upcoming = [r.activate_at for r in rows if r.state == "pending"] + [
            r.retire_at for r in rows if r.state == "retiring" and r.retire_at is not None
        ]
        return KeySnapshot(
            signers=signers,
            public_jwks=jwks,
            jwks_bytes=body,
            verify_keys=KeySet.import_key_set(jwks) if rows else KeySet([]),  # type: ignore[arg-type]
            fingerprint=hashlib.sha256(
                "|".join(f"{r.kid}:{r.state}" for r in rows).encode()
            ).hexdigest(),
            next_change=min(upcoming) if upcoming else None,
            states={r.kid: r.state for r in rows},
        )


def key_summary(row: SigningKey) -> dict[str, Any]:
    return {
        "kid": row.kid,
        "alg": row.alg,
        "state": row.state,
        "created_at": row.created_at.isoformat(),
        "activate_at": row.activate_at.isoformat(),
        "retire_at": row.retire_at.isoformat() if row.retire_at else None,
    }
