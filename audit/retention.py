"""Retention: prune events older than the retention period, keeping the rest verifiable.

Audit records are kept at least six months (Cybersecurity Law Art. 21; GB/T 22239-2019
§8.1.4.3), so the period cannot be set below 180 days. Pruning never deletes evidence it
has not checked, and never deletes what later verification needs:

* it prunes only up to a signed checkpoint's size `k`, after recomputing the tree over the
  events to be pruned and finding every checkpoint in that range intact (else it refuses);
* it keeps the compact range of [0, k) (at most log2(k) hashes) and the last pruned leaf
  hash, so the tree heads of all later sizes can still be recomputed from the remaining
  events, and the hash chain still links;
* every checkpoint over pruned events keeps an RFC 9162 §2.1.4 consistency proof to the
  checkpoint at `k` (itself proved by the kept range), so it still verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from audit._entry import GENESIS, decode_hashes, encode_hashes, leaf_data
from audit.checkpoints import (
    DEFAULT_LOG_ID,
    CheckpointInvalid,
    CheckpointKeys,
    checkpoint_keys,
    open_checkpoint,
)
from audit.errors import AuditError, ProofError, PruneRefused
from audit.log import AuditLog
from audit.merkle import CompactRange, MerkleTree, leaf_hash
from audit.models import EVENT_TABLE, Checkpoint
from audit.sequencer import load_state, lock_log
from keys.kek import KeyEncryptionKeys
from kit.clock import Clock
from kit.db import transaction

__all__ = ["MIN_RETENTION", "PruneResult", "RetentionPolicy", "prune"]

#: Six months (Cybersecurity Law Art. 21): the floor of any retention setting.
MIN_RETENTION = timedelta(days=180)
_EVENTS = EVENT_TABLE


@dataclass(frozen=True)
class RetentionPolicy:
    """How long events are kept (default 180 days, never less)."""

    keep_for: timedelta = MIN_RETENTION

    def __post_init__(self) -> None:
        if self.keep_for < MIN_RETENTION:
            raise AuditError(
                "audit events must be kept at least 180 days (Cybersecurity Law Art. 21)"
            )

    @classmethod
    def days(cls, days: int) -> RetentionPolicy:
        return cls(timedelta(days=days))

    def cutoff(self, now: datetime) -> datetime:
        return now - self.keep_for


@dataclass(frozen=True)
class PruneResult:
    """`removed` events were deleted; the log now starts at `first_position`."""

    removed: int
    first_position: int
    cutoff: datetime
    #: The checkpoint the pruning boundary sits on (None if nothing was pruned).
    boundary_checkpoint: int | None


def prune(
    factory: sessionmaker[Session],
    clock: Clock,
    *,
    policy: RetentionPolicy | None = None,
    keys: CheckpointKeys | None = None,
    keks: KeyEncryptionKeys | None = None,
    log: AuditLog | None = None,
    actor: str = "system:retention",
    log_id: str = DEFAULT_LOG_ID,
    dry_run: bool = False,
) -> PruneResult:
    """Delete events recorded before the retention cutoff, up to the last checkpoint that
    covers only such events. Records `audit.pruned` when `log` is given. Raises
    `PruneRefused` (and deletes nothing) if the range to prune does not verify."""
    policy = policy or RetentionPolicy()
    now = clock.now()
    cutoff = policy.cutoff(now)
    with transaction(factory) as session:
        lock_log(session)
        state = load_state(session, now)
        k0 = state.pruned_size
        # Every event below `limit` is older than the cutoff.
        first_young = session.execute(
            select(func.min(_EVENTS.c.position)).where(_EVENTS.c.recorded_at >= cutoff)
        ).scalar_one_or_none()
        limit = state.size if first_young is None else int(first_young)
        keys = keys or checkpoint_keys(session, keks=keks)
        heads = []
        for cp in session.execute(
            select(Checkpoint).where(Checkpoint.tree_size >= k0).order_by(Checkpoint.seq)
        ).scalars():
            try:
                head = open_checkpoint(cp.token, keys, log_id=log_id)
            except CheckpointInvalid as exc:
                raise PruneRefused(
                    f"checkpoint #{cp.seq} does not verify; run `tongban audit verify`",
                    detail=exc.description,
                ) from exc
            heads.append((cp, head))
        boundary = max(
            (p for p in heads if p[1].trusted and k0 < p[1].tree_size <= limit),
            key=lambda p: (p[1].tree_size, p[1].seq),
            default=None,
        )
        if boundary is None:
            return PruneResult(0, k0, cutoff, None)
        k = boundary[1].tree_size
        tree = _tree_below(session, k0, k, state.pruned_frontier, state.pruned_last_leaf)
        for cp, head in heads:
            if head.tree_size > k:
                continue
            if tree.root(head.tree_size) != head.root_hash:
                raise PruneRefused(
                    f"checkpoint #{head.seq} does not match the events it covers; "
                    "run `tongban audit verify`"
                )
            if head.tree_size < k:
                proof = tree.consistency_proof(head.tree_size, k)
                cp.anchor_size = k
                cp.anchor_proof = encode_hashes(proof)
        if dry_run:
            session.rollback()
            return PruneResult(k - k0, k, cutoff, boundary[1].seq)
        kept = tree.compact_range(k)
        last_leaf = tree.leaf(k - 1)
        session.execute(delete(_EVENTS).where(_EVENTS.c.position < k))
        state.pruned_size = k
        state.pruned_frontier = encode_hashes(kept.hashes)
        state.pruned_last_leaf = last_leaf
        state.updated_at = now
        if log is not None:
            log.record(
                session,
                "audit.pruned",
                actor=actor,
                details={
                    "first_position": k,
                    "removed": k - k0,
                    "checkpoint": boundary[1].seq,
                    "cutoff": cutoff.isoformat(),
                },
            )
        return PruneResult(k - k0, k, cutoff, boundary[1].seq)


def _tree_below(session: Session, k0: int, k: int, frontier: str, pruned_last: bytes) -> MerkleTree:
    """The tree over [0, k), recomputed from the events' content (not their stored hashes)
    and checked link by link: the evidence about to be deleted must be intact."""
    hashes = decode_hashes(frontier)
    if hashes is None:
        raise PruneRefused("the hashes kept at the pruned boundary are unreadable")
    try:
        prefix = CompactRange(k0, hashes)
    except ProofError as exc:
        raise PruneRefused("the hashes kept at the pruned boundary are unusable") from exc
    leaves: list[bytes] = []
    prev = pruned_last if k0 else GENESIS
    expected = k0
    stmt = (
        select(_EVENTS)
        .where(_EVENTS.c.position >= k0, _EVENTS.c.position < k)
        .order_by(_EVENTS.c.position)
    )
    for row in session.execute(stmt, execution_options={"yield_per": 5000}):
        digest = leaf_hash(
            leaf_data(
                event_id=row.event_id,
                time=row.recorded_at,
                event=row.event,
                actor=row.actor,
                subject=row.subject,
                client_id=row.client_id,
                source=row.source,
                result=row.result,
                details=row.details,
                prev=bytes(row.prev_hash),
            )
        )
        if (
            row.position != expected
            or digest != bytes(row.leaf_hash)
            or bytes(row.prev_hash) != prev
        ):
            raise PruneRefused(
                f"the event at position {expected} does not verify; run `tongban audit verify`"
            )
        leaves.append(digest)
        prev = digest
        expected += 1
    if expected != k:
        raise PruneRefused(f"events {expected}..{k - 1} are missing; run `tongban audit verify`")
    return MerkleTree(leaves, prefix=prefix)
