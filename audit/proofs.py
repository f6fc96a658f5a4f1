"""Inclusion and consistency proofs served from the stored log (RFC 9162 §2.1.3, §2.1.4).

A proof is built from the stored leaf hashes and is worth what the signed checkpoint it
leads to is worth: check it with `verify()` against that checkpoint's root. Building a
proof reads the leaf hashes of the unpruned tree (32 bytes per event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit._entry import decode_hashes
from audit.errors import ProofError
from audit.merkle import CompactRange, MerkleTree, verify_consistency, verify_inclusion
from audit.models import EVENT_TABLE, Checkpoint, TreeState
from kit.ids import b64url

__all__ = ["ConsistencyProof", "InclusionProof", "consistency_proof", "inclusion_proof"]

_EVENTS = EVENT_TABLE


@dataclass(frozen=True)
class InclusionProof:
    position: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    root_hash: bytes
    #: The signed checkpoint of `tree_size`, when there is one.
    checkpoint: str | None = None

    def verify(self, root_hash: bytes | None = None) -> None:
        """RFC 9162 §2.1.3.2 against `root_hash` (e.g. from a verified checkpoint)."""
        verify_inclusion(
            self.leaf_hash, self.position, self.tree_size, self.path, root_hash or self.root_hash
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "tree_size": self.tree_size,
            "leaf_hash": b64url(self.leaf_hash),
            "path": [b64url(h) for h in self.path],
            "root_hash": b64url(self.root_hash),
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: tuple[bytes, ...]

    def verify(self) -> None:
        """RFC 9162 §2.1.4.2."""
        verify_consistency(self.old_size, self.new_size, self.old_root, self.new_root, self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": b64url(self.old_root),
            "new_root": b64url(self.new_root),
            "path": [b64url(h) for h in self.path],
        }


def _tree(session: Session, size: int) -> MerkleTree:
    state = session.get(TreeState, 1)
    if state is None or size > state.size:
        raise ProofError(f"the log has no tree of size {size}")
    hashes = decode_hashes(state.pruned_frontier)
    if hashes is None:
        raise ProofError("the hashes kept at the pruned boundary are unreadable")
    prefix = CompactRange(state.pruned_size, hashes)
    if size < prefix.size:
        raise ProofError(f"events below {prefix.size} were pruned")
    leaves = [
        bytes(h)
        for h in session.execute(
            select(_EVENTS.c.leaf_hash)
            .where(_EVENTS.c.position >= prefix.size, _EVENTS.c.position < size)
            .order_by(_EVENTS.c.position)
        ).scalars()
    ]
    if len(leaves) != size - prefix.size:
        raise ProofError("events are missing from the log; run `tongban audit verify`")
    return MerkleTree(leaves, prefix=prefix)


def _latest_checkpoint(session: Session, at_least: int) -> tuple[int, str] | None:
    row = session.execute(
        select(Checkpoint.tree_size, Checkpoint.token)
        .where(Checkpoint.tree_size >= at_least)
        .order_by(Checkpoint.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), row.token)


def inclusion_proof(
    session: Session,
    *,
    position: int | None = None,
    event_id: str | None = None,
    tree_size: int | None = None,
) -> InclusionProof:
    """Prove one event (by position or id) is in the tree of `tree_size` leaves — by
    default the latest checkpoint that covers it, whose token the proof carries."""
    if (position is None) == (event_id is None):
        raise ProofError("name the event by position or by id")
    if event_id is not None:
        found = session.execute(
            select(_EVENTS.c.position).where(_EVENTS.c.event_id == event_id)
        ).scalar_one_or_none()
        if found is None:
            raise ProofError("no such event in the log (it may still be pending)")
        position = int(found)
    assert position is not None
    token = None
    if tree_size is None:
        latest = _latest_checkpoint(session, position + 1)
        if latest is not None:
            tree_size, token = latest
        else:
            state = session.get(TreeState, 1)
            tree_size = state.size if state is not None else 0
    else:
        row = session.execute(
            select(Checkpoint.token)
            .where(Checkpoint.tree_size == tree_size)
            .order_by(Checkpoint.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
        token = row
    tree = _tree(session, tree_size)
    return InclusionProof(
        position,
        tree_size,
        tree.leaf(position),
        tuple(tree.inclusion_proof(position, tree_size)),
        tree.root(tree_size),
        token,
    )


def consistency_proof(
    session: Session, old_size: int, new_size: int | None = None
) -> ConsistencyProof:
    """Prove the tree of `new_size` (default: the current one) extends that of `old_size`."""
    if new_size is None:
        state = session.get(TreeState, 1)
        new_size = state.size if state is not None else 0
    tree = _tree(session, new_size)
    return ConsistencyProof(
        old_size,
        new_size,
        tree.root(old_size),
        tree.root(new_size),
        tuple(tree.consistency_proof(old_size, new_size)),
    )
