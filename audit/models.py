"""Tables of `audit/`.

* `audit_pending` — the durable outbox. `AuditLog.record` inserts one row in the caller's
  transaction: cheap, no lock, no ordering decided yet; it commits or rolls back with the
  action it describes.
* `audit_event` — the log. The sequencer moves pending rows here in batches, giving each a
  gap-free `position` (its leaf index) and the hash of the event before it.
* `audit_tree_state` — one row: the tree head and compact range after the last batch, so
  a batch appends without reading old leaves, and the boundary left by pruning.
* `audit_checkpoint` — signed tree heads.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import Base, UtcDateTime

# SQLite assigns row ids only to an `INTEGER PRIMARY KEY`; PostgreSQL gets a 64-bit key.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class PendingEvent(Base):
    """An event recorded but not yet in the tree."""

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result: Mapped[str] = mapped_column(String(16))
    #: RFC 8785 canonical JSON, hashed exactly as stored.
    details: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_pending_subject", "subject"),)


class AuditEvent(Base):
    """One event in the log; `position` is its leaf index in the Merkle tree."""

    __tablename__ = "audit_event"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    subject: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result: Mapped[str] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text)
    #: Leaf hash of the event before (zeros for the first): a hash chain inside the tree,
    #: so a verifier can say *which* event was edited, removed or moved.
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: RFC 9162 leaf hash of this event, kept for proofs and for locating tampering.
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (Index("ix_audit_event_subject_position", "subject", "position"),)


class TreeState(Base):
    """The sequencer's tree head (one row, id 1)."""

    __tablename__ = "audit_tree_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: Compact range of [0, size) as JSON list of base64url hashes, largest subtree first.
    frontier: Mapped[str] = mapped_column(Text)
    last_leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: Events below this position were pruned; their compact range and last leaf hash stay.
    pruned_size: Mapped[int] = mapped_column(BigInteger)
    pruned_frontier: Mapped[str] = mapped_column(Text)
    pruned_last_leaf: Mapped[bytes] = mapped_column(LargeBinary(32))
    checkpoints: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Checkpoint(Base):
    """A signed tree head: `token` is a compact JWS over {log_id, seq, tree_size,
    root_hash, timestamp}. The columns repeat the payload for queries only; the verifier
    trusts the signature, and reports a column that disagrees with it."""

    __tablename__ = "audit_checkpoint"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    kid: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(Text)
    #: Once the events under this checkpoint are pruned: the size of the later checkpoint
    #: it was proved consistent with, and that RFC 9162 §2.1.4 proof (JSON, base64url).
    anchor_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    anchor_proof: Mapped[str | None] = mapped_column(Text, nullable=True)


# Core handles for bulk statements (batches of inserts, streaming reads).
EVENT_TABLE = cast(Table, AuditEvent.__table__)
PENDING_TABLE = cast(Table, PendingEvent.__table__)
