"""The sequencer: gives pending events their place in the tree, and signs checkpoints.

Writers never touch the tree: `AuditLog.record` only inserts into `audit_pending`. The
sequencer, run by every replica on a schedule and on demand, takes the log lock, moves the
oldest pending events (by insertion id) into `audit_event` with the next gap-free positions,
chains each to the leaf hash before it, extends the compact range kept in
`audit_tree_state`, and deletes those pending rows — all in one transaction, so a crash
leaves the batch pending for the next run and nothing is lost or placed twice.

Only one replica sequences at a time: on PostgreSQL a transaction-scoped advisory lock
(`pg_advisory_xact_lock`); on SQLite the database write lock taken up front with
`BEGIN IMMEDIATE`, so no other writer can slip in between reading the tree head and
writing the batch. A replica that finds the lock held skips its scheduled run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audit._bulk import SQLITE_WRITERS, delete_pending, insert_events, read_pending
from audit._entry import GENESIS, chain_leaf_hashes, decode_hashes, encode_hashes
from audit.checkpoints import DEFAULT_LOG_ID, sign_checkpoint
from audit.errors import AuditError
from audit.merkle import EMPTY_ROOT, CompactRange
from audit.models import PENDING_TABLE, Checkpoint, TreeState
from keys.signer import Signer
from kit.clock import Clock
from kit.db import transaction, write_lock

__all__ = ["LOCK_KEY", "CheckpointInfo", "Sequencer", "TickResult", "TreeHead", "lock_log"]

#: PostgreSQL advisory-lock key of the audit log (keys/ uses 7310001).
LOCK_KEY = 7310004
_PENDING = PENDING_TABLE
#: At most this long the sequencer waits, between batches, for writers of its process
#: (see `audit._bulk.WriterGate`): a batch, not the whole backlog, is what they wait for.
_GIVE_WAY_SECONDS = 0.1
_STATE = cast(Table, TreeState.__table__)
_READ_STATE = select(_STATE.c.size, _STATE.c.frontier, _STATE.c.last_leaf_hash).where(
    _STATE.c.id == 1
)
_WRITE_STATE = (
    update(_STATE)
    .where(_STATE.c.id == 1)
    .values(
        size=bindparam("size"),
        root_hash=bindparam("root_hash"),
        frontier=bindparam("frontier"),
        last_leaf_hash=bindparam("last_leaf_hash"),
        updated_at=bindparam("updated_at"),
    )
)


def lock_log(session: Session, *, wait: bool = True) -> bool:
    """Take the log lock for the rest of `session`'s transaction. Must be the first
    statement of the transaction. Returns False if `wait` is off and it is held."""
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise AuditError(f"the audit log does not support {dialect}")
    if wait:
        write_lock(session, LOCK_KEY)
        return True
    if dialect == "postgresql":
        got = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        return bool(got.scalar())
    conn = session.connection()
    conn.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError:
        return False
    finally:
        conn.exec_driver_sql("PRAGMA busy_timeout=10000")
    return True


def load_state(session: Session, now: datetime) -> TreeState:
    """The tree-state row, created (empty tree) on first use. Call under `lock_log`."""
    row = session.get(TreeState, 1)
    if row is None:
        row = TreeState(
            id=1,
            size=0,
            root_hash=EMPTY_ROOT,
            frontier="[]",
            last_leaf_hash=GENESIS,
            pruned_size=0,
            pruned_frontier="[]",
            pruned_last_leaf=GENESIS,
            checkpoints=0,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    return row


@dataclass(frozen=True)
class TreeHead:
    """The sequencer's current tree: `size` events, of which positions below `first` were
    pruned."""

    size: int
    root_hash: bytes
    first: int


@dataclass(frozen=True)
class CheckpointInfo:
    seq: int
    tree_size: int
    root_hash: bytes
    created_at: datetime
    kid: str
    token: str


@dataclass(frozen=True)
class TickResult:
    sequenced: int
    checkpoint: CheckpointInfo | None


class Sequencer:
    """Moves pending events into the tree in batches and signs checkpoints.

    Run `tick()` on a schedule in every replica (every few seconds): it sequences what is
    pending unless another replica is at it, and signs a checkpoint when the tree grew and
    `checkpoint_every` has passed. Run `sequence()` and `checkpoint()` on demand (CLI).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        *,
        batch_size: int = 1000,
        log_id: str = DEFAULT_LOG_ID,
        checkpoint_every: timedelta = timedelta(minutes=5),
    ) -> None:
        if not 1 <= batch_size <= 10000:
            raise AuditError("the audit batch size is between 1 and 10000")
        self._factory = factory
        self._clock = clock
        self.batch_size = batch_size
        self.log_id = log_id
        self.checkpoint_every = checkpoint_every

    # -- sequencing ---------------------------------------------------------------------

    def sequence(self, *, wait: bool = True, limit: int | None = None) -> int:
        """Sequence pending events batch by batch (one transaction each) until none are
        left, or `limit` were placed. Returns how many were placed; 0 without waiting when
        `wait` is off and another replica holds the lock."""
        total = 0
        bind = self._factory.kw.get("bind")
        sqlite = bind is not None and bind.dialect.name == "sqlite"
        while limit is None or total < limit:
            size = self.batch_size if limit is None else min(self.batch_size, limit - total)
            if sqlite and total:
                SQLITE_WRITERS.wait_for_writers(_GIVE_WAY_SECONDS)
            with transaction(self._factory) as session:
                if not lock_log(session, wait=wait):
                    break
                placed = self._append(session, size)
            total += placed
            if placed < size:
                break
        return total

    def _append(self, session: Session, size: int) -> int:
        now = self._clock.now()
        connection = session.connection()
        rows = read_pending(connection, size)
        if not rows:
            return 0
        # Core, not the ORM object: its load and flush cost as much as hashing a
        # hundred events, and a batch runs every few seconds under load.
        state = connection.execute(_READ_STATE).first()
        if state is None:
            load_state(session, now)
            state = connection.execute(_READ_STATE).one()
        try:
            compact = CompactRange(state.size, decode_hashes(state.frontier) or ())
        except AuditError as exc:
            # Refuse to extend a tree whose head was tampered with: the events stay
            # pending (nothing lost) until an operator runs `audit verify`.
            raise AuditError(
                "the audit tree state is corrupt; run `tongban audit verify`", detail=str(exc)
            ) from exc
        prevs, leaves = chain_leaf_hashes(rows, state.last_leaf_hash)
        compact.extend(leaves)
        insert_events(connection, state.size, rows, prevs, leaves)
        delete_pending(connection, rows)
        connection.execute(
            _WRITE_STATE,
            {
                "size": compact.size,
                "root_hash": compact.root(),
                "frontier": encode_hashes(compact.hashes),
                "last_leaf_hash": leaves[-1],
                "updated_at": now,
            },
        )
        return len(rows)

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint(self, signer: Signer, *, force: bool = True) -> CheckpointInfo | None:
        """Sign the current tree head. Without `force`, only if the tree grew since the
        last checkpoint (and is not empty). Does not sequence: call `sequence()` first to
        cover what is pending."""
        with transaction(self._factory) as session:
            lock_log(session)
            return self._checkpoint(session, signer, force=force)

    def _due(self, session: Session, size: int, now: datetime) -> bool:
        """A scheduled checkpoint is due when the tree grew and the last one is old enough."""
        last = session.execute(
            select(Checkpoint.tree_size, Checkpoint.created_at)
            .order_by(Checkpoint.seq.desc())
            .limit(1)
        ).first()
        return size > 0 and (
            last is None
            or (last.tree_size < size and last.created_at + self.checkpoint_every <= now)
        )

    def _checkpoint(
        self, session: Session, signer: Signer, *, force: bool
    ) -> CheckpointInfo | None:
        now = self._clock.now()
        state = load_state(session, now)
        if not force and not self._due(session, state.size, now):
            return None
        seq = state.checkpoints
        token = sign_checkpoint(
            signer,
            log_id=self.log_id,
            seq=seq,
            tree_size=state.size,
            root_hash=state.root_hash,
            now=now,
        )
        session.add(
            Checkpoint(
                seq=seq,
                tree_size=state.size,
                root_hash=state.root_hash,
                created_at=now,
                kid=signer.kid,
                token=token,
            )
        )
        state.checkpoints = seq + 1
        session.flush()
        return CheckpointInfo(seq, state.size, state.root_hash, now, signer.kid, token)

    def tick(
        self, signer: Signer | Callable[[], Signer], *, limit: int | None = None
    ) -> TickResult:
        """The scheduled run: sequence what is pending (skipped if another replica holds
        the lock; at most `limit` events), then sign a checkpoint if one is due. `signer`
        may be a callable (e.g. `lambda: checkpoint_signer(factory, keyring, clock, log)`),
        called only when a checkpoint is due, so a tick that has nothing to sign touches
        no key."""
        placed = self.sequence(wait=False, limit=limit)
        with self._factory() as session:
            head = self.head(session)
            due = self._due(session, head.size, self._clock.now())
        if not due:
            return TickResult(placed, None)
        if not isinstance(signer, Signer):
            # Before taking the log lock: loading the signer may write (first key, a
            # rotation), and on SQLite the log lock is the database's one write lock.
            signer = signer()
        with transaction(self._factory) as session:
            if not lock_log(session, wait=False):
                return TickResult(placed, None)
            made = self._checkpoint(session, signer, force=False)
        return TickResult(placed, made)

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def head(session: Session) -> TreeHead:
        row = session.get(TreeState, 1)
        if row is None:
            return TreeHead(0, EMPTY_ROOT, 0)
        return TreeHead(row.size, row.root_hash, row.pruned_size)

    @staticmethod
    def pending(session: Session) -> int:
        """How many events wait for the sequencer (a health metric)."""
        return int(session.execute(select(func.count()).select_from(_PENDING)).scalar_one())
