"""Signed checkpoints: a tree head (size, root hash, time) signed as a compact JWS.

The payload carries what an RFC 9162 §4.10 signed tree head does — `tree_size`,
`timestamp` (milliseconds) and `root_hash` — plus the log's name and the checkpoint's
sequence number (a gap in the numbering shows a deleted checkpoint). The header's `typ` is
`audit-checkpoint+jwt` (RFC 8725 §3.11) so no other token of the platform can pass as one,
and the verifier fixes the algorithm list (RFC 8725 §3.1).

The signing key comes from `keys/`: a `KeyRing(purpose="audit")` key, KEK-wrapped at rest
and rotated like token keys. A checkpoint is verified against every audit key the platform
ever had, including retired ones (a checkpoint never expires); a key that was revoked
proves nothing any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit.errors import AuditError
from audit.log import AuditLog
from keys.errors import KeysError
from keys.jws import InvalidJws, sign_compact, verify_compact
from keys.kek import KeyEncryptionKeys
from keys.keyring import KeyRing, RotationPolicy
from keys.models import SigningKey
from keys.signer import Signer, SoftwareSigner
from kit.clock import Clock
from kit.db import transaction
from kit.ids import b64url, b64url_decode

__all__ = [
    "AUDIT_KEY_PURPOSE",
    "CHECKPOINT_ALGORITHMS",
    "CHECKPOINT_TYP",
    "DEFAULT_LOG_ID",
    "CheckpointInvalid",
    "CheckpointKeys",
    "SignedTreeHead",
    "audit_keyring",
    "checkpoint_keys",
    "checkpoint_signer",
    "open_checkpoint",
    "sign_checkpoint",
]

CHECKPOINT_TYP = "audit-checkpoint+jwt"
DEFAULT_LOG_ID = "tongban-audit"
AUDIT_KEY_PURPOSE = "audit"
CHECKPOINT_ALGORITHMS = ("ES256",)
_PAYLOAD_KEYS = frozenset({"log_id", "seq", "tree_size", "root_hash", "timestamp"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class CheckpointInvalid(AuditError):
    """A checkpoint's signature, key or payload does not verify."""

    code = "audit_checkpoint_invalid"


@dataclass(frozen=True)
class SignedTreeHead:
    """What a verified checkpoint says."""

    log_id: str
    seq: int
    tree_size: int
    root_hash: bytes
    timestamp: datetime
    kid: str
    #: False when the key that signed it has since been revoked: the signature is
    #: intact, but proves nothing (whoever stole the key could have made it).
    trusted: bool = True


@dataclass(frozen=True)
class CheckpointKeys:
    """The public keys checkpoints are verified with (JWKS), and the `kid`s of revoked ones."""

    jwks: Mapping[str, Any]
    revoked: frozenset[str] = frozenset()
    algorithms: tuple[str, ...] = CHECKPOINT_ALGORITHMS
    _sets: dict[str, KeySet] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = self.jwks.get("keys") if isinstance(self.jwks, Mapping) else None
        if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
            raise CheckpointInvalid('checkpoint keys must be a JWKS: {"keys": [...]}')
        for key in keys:
            if _PRIVATE_MEMBERS & set(key):
                raise CheckpointInvalid("a checkpoint JWKS must hold public keys only")

    def _keyset(self, revoked: bool) -> KeySet:
        name = "revoked" if revoked else "trusted"
        if name not in self._sets:
            keys = [dict(k) for k in self.jwks["keys"] if (k.get("kid") in self.revoked) == revoked]
            self._sets[name] = KeySet.import_key_set({"keys": keys})
        return self._sets[name]

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(str(k.get("kid")) for k in self.jwks["keys"])


def audit_keyring(keks: KeyEncryptionKeys, policy: RotationPolicy | None = None) -> KeyRing:
    """The platform's checkpoint-signing keys: ES256, purpose `audit`, KEK-wrapped."""
    return KeyRing(keks, policy, algs=CHECKPOINT_ALGORITHMS, purpose=AUDIT_KEY_PURPOSE)


_KEY_EVENTS = {
    "created": "created",
    "pending": "created",
    "active": "activated",
    "retiring": "rotated",
    "retired": "retired",
}


def checkpoint_signer(
    factory: sessionmaker[Session], keyring: KeyRing, clock: Clock, log: AuditLog | None = None
) -> Signer:
    """The current checkpoint signer: creates the first key, advances rotation (recording
    `key.*` events when `log` is given) and loads the active key."""
    with transaction(factory) as session:
        now = clock.now()
        known = set(
            session.execute(
                select(SigningKey.kid).where(SigningKey.purpose == keyring.purpose)
            ).scalars()
        )
        keyring.ensure(session, now)
        first = [
            (kid, "created")  # the first key: created active at once
            for kid in session.execute(
                select(SigningKey.kid).where(SigningKey.purpose == keyring.purpose)
            ).scalars()
            if kid not in known
        ]
        changes = first + keyring.tick(session, now)
        if log is not None:
            for kid, state in changes:
                if state in _KEY_EVENTS:
                    log.record(
                        session,
                        f"key.{_KEY_EVENTS[state]}",
                        actor="system:audit",
                        subject=kid,
                        details={"purpose": AUDIT_KEY_PURPOSE},
                    )
        return keyring.load(session).signer(CHECKPOINT_ALGORITHMS[0])


def _genuine(row: Any, keks: KeyEncryptionKeys) -> bool:
    """Whether a key row holds a private key wrapped by our KEK that matches its public
    JWK: a row someone inserted into the table without the KEK cannot pass."""
    try:
        pem = keks.unwrap(row.wrapped_private, aad=f"signing-key:{row.kid}")
        signer = SoftwareSigner.from_pem(row.kid, row.alg, pem)
    except (KeysError, ValueError, TypeError):
        return False
    public = signer.public_jwk()
    stored = dict(row.public_jwk)
    return all(
        stored.get(member) == public.get(member)
        for member in ("kty", "crv", "x", "y", "n", "e", "kid")
    )


def checkpoint_keys(
    session: Session,
    purpose: str = AUDIT_KEY_PURPOSE,
    *,
    keks: KeyEncryptionKeys | None = None,
) -> CheckpointKeys:
    """Every key that ever signed checkpoints (retired ones too), from `keys/`' table.

    With `keks`, only keys whose wrapped private part unwraps under them and matches the
    published public key are trusted — otherwise whoever can write to the database could
    add a key of their own and sign checkpoints over a rewritten log."""
    rows = session.execute(
        select(
            SigningKey.kid,
            SigningKey.alg,
            SigningKey.state,
            SigningKey.public_jwk,
            SigningKey.wrapped_private,
        )
        .where(SigningKey.purpose == purpose)
        .order_by(SigningKey.created_at.desc(), SigningKey.kid)
    ).all()
    if keks is not None:
        rows = [row for row in rows if _genuine(row, keks)]
    return CheckpointKeys(
        jwks={"keys": [dict(row.public_jwk) for row in rows]},
        revoked=frozenset(row.kid for row in rows if row.state == "revoked"),
    )


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def sign_checkpoint(
    signer: Signer, *, log_id: str, seq: int, tree_size: int, root_hash: bytes, now: datetime
) -> str:
    payload = {
        "log_id": log_id,
        "seq": seq,
        "tree_size": tree_size,
        "root_hash": b64url(root_hash),
        "timestamp": _millis(now),
    }
    return sign_compact(signer, payload, typ=CHECKPOINT_TYP)


def _strict_b64url(text: str) -> bytes:
    # Canonical unpadded base64url only: one value, one spelling.
    value = b64url_decode(text)
    if b64url(value) != text:
        raise ValueError("not canonical base64url")
    return value


def _parse_payload(payload: Mapping[str, Any], kid: str, trusted: bool) -> SignedTreeHead:
    if set(payload) != _PAYLOAD_KEYS:
        raise CheckpointInvalid("the checkpoint payload does not have the expected members")
    for key in ("seq", "tree_size", "timestamp"):
        value = payload[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointInvalid(f"checkpoint {key} is not a non-negative integer")
    if not isinstance(payload["log_id"], str) or not isinstance(payload["root_hash"], str):
        raise CheckpointInvalid("checkpoint log_id and root_hash are strings")
    try:
        root = _strict_b64url(payload["root_hash"])
    except ValueError as exc:  # binascii.Error is a ValueError
        raise CheckpointInvalid("checkpoint root_hash is not base64url") from exc
    if len(root) != 32:
        raise CheckpointInvalid("checkpoint root_hash is not a SHA-256 value")
    try:
        moment = datetime.fromtimestamp(payload["timestamp"] / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise CheckpointInvalid("checkpoint timestamp is out of range") from exc
    return SignedTreeHead(
        log_id=payload["log_id"],
        seq=payload["seq"],
        tree_size=payload["tree_size"],
        root_hash=root,
        timestamp=moment,
        kid=kid,
        trusted=trusted,
    )


def open_checkpoint(token: str, keys: CheckpointKeys, *, log_id: str) -> SignedTreeHead:
    """Verify a checkpoint token and return what it signs. Raises `CheckpointInvalid`:
    unknown key, bad signature, wrong `typ`, wrong log or malformed payload. A token made
    with a since-revoked key verifies with `trusted=False`."""
    if not isinstance(token, str):
        raise CheckpointInvalid("a checkpoint token is a string")
    algorithms = list(keys.algorithms)
    trusted = True
    try:
        header, payload = verify_compact(
            token, keys._keyset(False), algorithms=algorithms, typ=CHECKPOINT_TYP
        )
    except (InvalidJws, ValueError, KeyError, TypeError) as exc:
        if not keys.revoked:
            raise CheckpointInvalid(
                "the checkpoint signature does not verify", detail=repr(exc)
            ) from exc
        try:
            header, payload = verify_compact(
                token, keys._keyset(True), algorithms=algorithms, typ=CHECKPOINT_TYP
            )
        except (InvalidJws, ValueError, KeyError, TypeError) as exc2:
            raise CheckpointInvalid(
                "the checkpoint signature does not verify", detail=repr(exc2)
            ) from exc2
        trusted = False
    head = _parse_payload(payload, str(header.get("kid", "")), trusted)
    if head.log_id != log_id:
        raise CheckpointInvalid(f"the checkpoint was signed for log {head.log_id!r}")
    return head


def jwks_of(keys: CheckpointKeys) -> dict[str, Any]:
    return {"keys": [dict(k) for k in keys.jwks["keys"]]}


def from_jwks(jwks: Mapping[str, Any], revoked: Iterable[str] = ()) -> CheckpointKeys:
    return CheckpointKeys(jwks=jwks, revoked=frozenset(revoked))
