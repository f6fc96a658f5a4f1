"""Verification of the audit log: recompute the tree from the stored events and check every
checkpoint against it.

What is checked, in one streaming pass over the events in position order (constant memory
but for the checkpoints):

* each event's leaf hash is recomputed from its content (RFC 9162 §2.1.1) and compared with
  the stored one → **modified** at that position;
* positions run without gaps from the pruned boundary → **deleted** at the missing ones;
* each event's `prev` link equals the stored hash of the event before it; a broken link
  triggers a second pass that follows the hash chain and reports events **inserted**,
  **reordered** or **deleted** (with the log renumbered to hide the gap);
* the tree head recomputed at each checkpoint's size equals the signed root → otherwise
  **checkpoint mismatch**; a checkpoint beyond the last event → **truncated**;
* each checkpoint's signature (the platform's audit keys, `typ`, the log's name) →
  **checkpoint forged**; stored columns that disagree with the signed payload → **checkpoint
  altered**; a gap in checkpoint numbers → **checkpoint missing**;
* checkpoints over pruned events via the consistency proofs kept when pruning (RFC 9162
  §2.1.4.2) → **checkpoint unanchored** if a proof is missing or wrong.

The result is a frozen `VerificationReport` (as pyHanko reports validation): every fact
established, the findings with their positions, and a bottom line PASSED / INDETERMINATE /
FAILED. It fails closed: an error while reading becomes a finding, never a pass.
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit._entry import GENESIS, decode_hashes, leaf_data
from audit.checkpoints import (
    DEFAULT_LOG_ID,
    CheckpointInvalid,
    CheckpointKeys,
    SignedTreeHead,
    checkpoint_keys,
    open_checkpoint,
)
from audit.errors import AuditError, AuditIntegrityError, ProofError
from audit.merkle import EMPTY_ROOT, CompactRange, leaf_hash, verify_consistency
from audit.models import EVENT_TABLE, Checkpoint, TreeState
from keys.kek import KeyEncryptionKeys
from kit.ids import b64url

__all__ = [
    "Finding",
    "FindingKind",
    "Outcome",
    "VerificationReport",
    "verify_log",
]

_EVENTS = EVENT_TABLE
_NEVER = b"\xff" * 32  # a leaf hash no content can have: stands in for unreadable content


class Outcome(StrEnum):
    """The bottom line, in the ETSI EN 319 102-1 vocabulary pyHanko uses."""

    PASSED = "passed"
    #: Nothing is wrong, but nothing is signed either (no trusted checkpoint yet).
    INDETERMINATE = "indeterminate"
    FAILED = "failed"


class FindingKind(StrEnum):
    MODIFIED = "modified"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    CHECKPOINT_FORGED = "checkpoint_forged"
    CHECKPOINT_ALTERED = "checkpoint_altered"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    CHECKPOINT_MISSING = "checkpoint_missing"
    CHECKPOINT_UNANCHORED = "checkpoint_unanchored"
    STATE_MISMATCH = "state_mismatch"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class Finding:
    """One thing found wrong. `position` is the event position (leaf index) concerned;
    `count` how many consecutive positions; `checkpoint` a checkpoint number; `line` a
    line of an export file."""

    kind: FindingKind
    position: int | None
    message: str
    count: int = 1
    checkpoint: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.position is not None:
            where.append(f"position {self.position}")
        if self.checkpoint is not None:
            where.append(f"checkpoint #{self.checkpoint}")
        if self.line is not None:
            where.append(f"line {self.line}")
        at = f" at {', '.join(where)}" if where else ""
        return f"{self.kind.value}{at}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "position": self.position,
            "count": self.count,
            "checkpoint": self.checkpoint,
            "line": self.line,
            "message": self.message,
        }


@dataclass(frozen=True)
class VerificationReport:
    """Every fact the verifier established. Only `outcome is PASSED` means the events from
    `first_position` to `anchored_size` are exactly those the checkpoints signed."""

    outcome: Outcome
    log_id: str
    #: Events below this position were pruned (their checkpoints remain).
    first_position: int
    #: One past the last event position seen.
    end_position: int
    events_checked: int
    #: Recomputed tree head over all events seen (base64url), None if it could not be.
    root_hash: str | None
    checkpoints_total: int
    checkpoints_verified: int
    #: The largest tree size a trusted, verified checkpoint covers.
    anchored_size: int
    findings: tuple[Finding, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.PASSED

    def positions(self, kind: FindingKind | None = None) -> tuple[int, ...]:
        return tuple(
            f.position
            for f in self.findings
            if f.position is not None and (kind is None or f.kind is kind)
        )

    def kinds(self) -> frozenset[FindingKind]:
        return frozenset(f.kind for f in self.findings)

    def raise_for_failure(self) -> None:
        """Fail closed: raise `AuditIntegrityError` unless the outcome is PASSED."""
        if not self.ok:
            raise AuditIntegrityError(self)

    def summary(self) -> str:
        lines = [
            f"audit log {self.log_id!r}: {self.outcome.value.upper()}",
            f"  events {self.first_position}..{self.end_position - 1} checked: "
            f"{self.events_checked}"
            if self.end_position > self.first_position
            else "  no events",
            f"  checkpoints verified: {self.checkpoints_verified} of {self.checkpoints_total}"
            f"; anchored up to size {self.anchored_size}",
        ]
        if self.root_hash:
            lines.append(f"  tree head: {self.root_hash}")
        lines.extend(f"  ! {finding}" for finding in self.findings)
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "log_id": self.log_id,
            "first_position": self.first_position,
            "end_position": self.end_position,
            "events_checked": self.events_checked,
            "root_hash": self.root_hash,
            "checkpoints_total": self.checkpoints_total,
            "checkpoints_verified": self.checkpoints_verified,
            "anchored_size": self.anchored_size,
            "findings": [f.to_dict() for f in self.findings],
            "warnings": list(self.warnings),
        }


# -- inputs, from the database or an export ------------------------------------------------


@dataclass(frozen=True)
class RowInput:
    """One stored event: its position, canonical entry bytes (None if unreadable), and the
    stored leaf and previous-leaf hashes."""

    slot: int
    entry: bytes | None
    leaf: bytes
    prev: bytes
    error: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class CheckpointInput:
    token: str
    seq: int | None
    tree_size: int | None
    root_hash: bytes | None
    anchor_size: int | None = None
    anchor_proof: tuple[bytes, ...] | None = None
    line: int | None = None
    #: Brought by the auditor (from an earlier export), not read from the log itself.
    witnessed: bool = False


@dataclass(frozen=True)
class PrunedInput:
    size: int = 0
    frontier: tuple[bytes, ...] = ()
    last_leaf: bytes = GENESIS
    error: str | None = None


@dataclass(frozen=True)
class HeadInput:
    """What the writer says the tree is (the sequencer state, or an export's header)."""

    size: int
    root_hash: bytes | None
    last_leaf: bytes | None
    checkpoints: int | None = None


@dataclass
class _Stream:
    """State of the first pass."""

    findings: list[Finding] = field(default_factory=list)
    gaps_end: set[int] = field(default_factory=set)  # s where slot s-1 is missing
    link_breaks: int = 0
    rows: int = 0
    end: int = 0
    last_leaf: bytes = GENESIS
    roots: dict[int, bytes] = field(default_factory=dict)


def _prefix(value: bytes) -> int:
    return int.from_bytes(value[:8].ljust(8, b"\0"), "big")


def _lis(values: list[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    tails_at: list[int] = []
    parent = [-1] * len(values)
    for j, value in enumerate(values):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tails_at.append(j)
        else:
            tails[k] = value
            tails_at[k] = j
        parent[j] = tails_at[k - 1] if k else -1
    keep: set[int] = set()
    j = tails_at[-1] if tails_at else -1
    while j != -1:
        keep.add(j)
        j = parent[j]
    return keep


class _Verifier:
    def __init__(
        self,
        *,
        log_id: str,
        keys: CheckpointKeys,
        rows: Callable[[], Iterable[RowInput]],
        checkpoints: list[CheckpointInput],
        pruned: PrunedInput,
        head: HeadInput | None,
        findings: Iterable[Finding] = (),
        warnings: Iterable[str] = (),
    ) -> None:
        self.log_id = log_id
        self.keys = keys
        self.rows = rows
        self.checkpoints = checkpoints
        self.pruned = pruned
        self.head = head
        self.findings: list[Finding] = list(findings)
        self.warnings: list[str] = list(warnings)

    def add(self, kind: FindingKind, position: int | None, message: str, **extra: Any) -> None:
        self.findings.append(Finding(kind, position, message, **extra))

    # -- checkpoints --------------------------------------------------------------------

    def _open_checkpoints(self) -> list[tuple[CheckpointInput, SignedTreeHead]]:
        opened: list[tuple[CheckpointInput, SignedTreeHead]] = []
        forged_seqs: set[int] = set()
        for cp in self.checkpoints:
            try:
                head = open_checkpoint(cp.token, self.keys, log_id=self.log_id)
            except CheckpointInvalid as exc:
                self.add(
                    FindingKind.CHECKPOINT_FORGED,
                    cp.tree_size,
                    exc.description,
                    checkpoint=cp.seq,
                    line=cp.line,
                )
                if cp.seq is not None:
                    forged_seqs.add(cp.seq)
                continue
            if not cp.witnessed and (cp.seq, cp.tree_size, cp.root_hash) != (
                head.seq,
                head.tree_size,
                head.root_hash,
            ):
                self.add(
                    FindingKind.CHECKPOINT_ALTERED,
                    head.tree_size,
                    "the stored number, size or root differs from what was signed",
                    checkpoint=head.seq,
                    line=cp.line,
                )
            opened.append((cp, head))
        by_seq: dict[int, list[SignedTreeHead]] = defaultdict(list)
        for _, head in opened:
            by_seq[head.seq].append(head)
        for seq, heads in by_seq.items():
            if len({(h.tree_size, h.root_hash) for h in heads}) > 1:
                self.add(
                    FindingKind.CHECKPOINT_MISMATCH,
                    heads[0].tree_size,
                    "two different signed tree heads carry the same number: the log forked",
                    checkpoint=seq,
                )
        expected = max([*by_seq, -1]) + 1
        if self.head is not None and self.head.checkpoints is not None:
            expected = max(expected, self.head.checkpoints)
        present = sorted({s for s in [*by_seq, *forged_seqs] if 0 <= s < expected})
        next_seq = 0
        for seq in [*present, expected]:
            if seq > next_seq:  # numbers next_seq..seq-1 are skipped
                self.add(
                    FindingKind.CHECKPOINT_MISSING,
                    None,
                    f"{seq - next_seq} checkpoint(s) deleted: numbers {next_seq}..{seq - 1}"
                    " are skipped",
                    checkpoint=next_seq,
                    count=seq - next_seq,
                )
            next_seq = seq + 1
        ordered = sorted((h for _, h in opened), key=lambda h: h.seq)
        for before, after in itertools.pairwise(ordered):
            # Sizes only grow with the number. (Timestamps are not compared: replicas'
            # clocks may differ by a little, and that is no tampering.)
            if after.seq != before.seq and after.tree_size < before.tree_size:
                self.add(
                    FindingKind.CHECKPOINT_MISMATCH,
                    after.tree_size,
                    f"covers fewer events than checkpoint #{before.seq}: the log was rolled back",
                    checkpoint=after.seq,
                )
        for _, head in opened:
            if not head.trusted:
                self.warnings.append(
                    f"checkpoint #{head.seq} was signed by revoked key {head.kid}: not relied on"
                )
        return [(cp, h) for cp, h in opened if h.trusted]

    # -- first pass ---------------------------------------------------------------------

    def _stream(self, compact: CompactRange | None, wanted: set[int]) -> _Stream:
        k0 = self.pruned.size
        st = _Stream(end=k0, last_leaf=self.pruned.last_leaf if k0 else GENESIS)
        if compact is not None and compact.size in wanted:
            st.roots[compact.size] = compact.root()
        for row in self.rows():
            if row.slot < st.end:
                why = (
                    "before the pruned boundary"
                    if row.slot < k0
                    else "a second event at the same position"
                )
                self.add(FindingKind.INSERTED, row.slot, f"an event {why}", line=row.line)
                continue
            if row.slot > st.end:
                missing = row.slot - st.end
                self.add(
                    FindingKind.DELETED,
                    st.end,
                    f"{missing} event(s) missing at positions {st.end}..{row.slot - 1}",
                    count=missing,
                )
                st.gaps_end.add(row.slot)
                st.end = row.slot
            if row.entry is None:
                self.add(
                    FindingKind.CORRUPT, row.slot, row.error or "unreadable event", line=row.line
                )
                recomputed = _NEVER
            else:
                recomputed = leaf_hash(row.entry)
                if recomputed != row.leaf:
                    self.add(
                        FindingKind.MODIFIED,
                        row.slot,
                        "the event's content does not match its recorded hash",
                        line=row.line,
                    )
            if row.prev != st.last_leaf:
                st.link_breaks += 1
            if compact is not None:
                compact.append(recomputed)
                if compact.size in wanted:
                    st.roots[compact.size] = compact.root()
            st.last_leaf = row.leaf
            st.end += 1
            st.rows += 1
        return st

    # -- second pass: follow the hash chain ---------------------------------------------

    def _classify(self, st: _Stream, count_matches: bool) -> None:
        k0 = self.pruned.size
        # Compact arrays: a million events cost 24 MB here, not a million Python objects.
        slots, hs, ps = array("q"), array("Q"), array("Q")
        for row in self.rows():
            if row.slot < k0:
                continue
            slots.append(row.slot)
            hs.append(_prefix(row.leaf))
            ps.append(_prefix(row.prev))
        n = len(slots)
        succ: dict[int, list[int]] = defaultdict(list)
        for i in range(n):
            succ[ps[i]].append(i)
        known = set(hs)
        genesis = _prefix(self.pruned.last_leaf if k0 else GENESIS)
        visited = bytearray(n)
        order: list[int] = []
        heads: list[int] = []
        inserted: list[int] = []

        def run_length(i: int, cap: int = 1000) -> int:
            length, cur, seen = 0, i, set()
            while cur not in seen and length < cap:
                seen.add(cur)
                length += 1
                nxt = [j for j in succ.get(hs[cur], ()) if not visited[j]]
                if not nxt:
                    break
                cur = nxt[0]
            return length

        def walk(cur: int) -> None:
            while True:
                cands = [i for i in succ.get(cur, ()) if not visited[i]]
                if not cands:
                    return
                chosen = cands[0]
                if len(cands) > 1:
                    # A fork: two events claim the same predecessor. The genuine one is
                    # followed by the rest of the log; the foreign one leads nowhere.
                    chosen = max(cands, key=lambda i: (run_length(i), -slots[i]))
                    for i in cands:
                        if i != chosen:
                            inserted.append(i)
                            visited[i] = 1
                visited[chosen] = 1
                order.append(chosen)
                cur = hs[chosen]

        walk(genesis)
        for i in range(n):
            if visited[i]:
                continue
            if ps[i] in known or ps[i] == genesis:
                inserted.append(i)  # hangs off an event already placed: a foreign branch
                visited[i] = 1
                continue
            if hs[i] not in succ and i != n - 1:
                inserted.append(i)  # links to nothing and nothing links to it
                visited[i] = 1
                continue
            heads.append(i)
            visited[i] = 1
            order.append(i)
            walk(hs[i])

        keep = _lis([slots[i] for i in order])
        for j, i in enumerate(order):
            if j not in keep:
                after = f" after position {slots[order[j - 1]]}" if j and i not in heads else ""
                self.add(
                    FindingKind.REORDERED,
                    slots[i],
                    f"this event is out of order: it belongs{after or ' elsewhere'}",
                )
        for i in heads:
            slot = slots[i]
            if slot in st.gaps_end:
                continue  # the gap was reported already
            if slot == k0 and k0:
                self.add(
                    FindingKind.STATE_MISMATCH,
                    slot,
                    "the first event does not link to the hash kept at the pruned boundary",
                )
            elif count_matches and slot > k0:
                self.add(
                    FindingKind.MODIFIED,
                    slot - 1,
                    "the event was altered together with its stored hash (the next "
                    "event's link no longer matches)",
                )
            else:
                self.add(
                    FindingKind.DELETED,
                    slot,
                    "event(s) before this one were deleted and the log renumbered",
                )
        for i in inserted:
            self.add(FindingKind.INSERTED, slots[i], "an event that is not part of the chain")

    # -- anchored (pruned-over) checkpoints --------------------------------------------

    def _anchored(
        self,
        below: list[tuple[CheckpointInput, SignedTreeHead]],
        established: set[tuple[int, bytes]],
    ) -> int:
        verified = 0
        for cp, head in sorted(below, key=lambda p: (-p[1].tree_size, p[0].witnessed)):
            if (head.tree_size, head.root_hash) in established:
                verified += 1  # the same head as a checkpoint already proved
                continue
            anchors = [root for size, root in established if size == cp.anchor_size]
            if cp.anchor_size is None or cp.anchor_proof is None or not anchors:
                self.add(
                    FindingKind.CHECKPOINT_UNANCHORED,
                    head.tree_size,
                    "its events were pruned and no verified consistency proof links it "
                    "to a later checkpoint",
                    checkpoint=head.seq,
                )
                continue
            for root in anchors:
                try:
                    verify_consistency(
                        head.tree_size, cp.anchor_size, head.root_hash, root, cp.anchor_proof
                    )
                except ProofError:
                    continue
                established.add((head.tree_size, head.root_hash))
                verified += 1
                break
            else:
                self.add(
                    FindingKind.CHECKPOINT_UNANCHORED,
                    head.tree_size,
                    "the consistency proof kept when pruning does not verify",
                    checkpoint=head.seq,
                )
        return verified

    # -- all together -------------------------------------------------------------------

    def run(self) -> VerificationReport:
        trusted = self._open_checkpoints()
        k0 = self.pruned.size
        compact: CompactRange | None = None
        if self.pruned.error is None:
            try:
                compact = CompactRange(k0, self.pruned.frontier)
            except ProofError as exc:
                self.add(
                    FindingKind.STATE_MISMATCH,
                    k0,
                    f"the hashes kept for the pruned range are unusable: {exc.description}",
                )
        else:
            self.add(FindingKind.STATE_MISMATCH, k0, self.pruned.error)
        wanted = {h.tree_size for _, h in trusted if h.tree_size >= k0}
        if self.head is not None:
            wanted.add(self.head.size)
        st = self._stream(compact, wanted)
        end = st.end

        established: set[tuple[int, bytes]] = set()
        truncated_to = 0
        verified = 0
        previous_good = k0
        for _cp, head in sorted(
            (p for p in trusted if p[1].tree_size >= k0), key=lambda p: (p[1].tree_size, p[1].seq)
        ):
            size = head.tree_size
            if size > end:
                truncated_to = max(truncated_to, size)
                continue
            got = st.roots.get(size)
            if got is None:
                self.add(
                    FindingKind.CHECKPOINT_MISMATCH,
                    size,
                    "its tree head cannot be recomputed: events are missing",
                    checkpoint=head.seq,
                )
            elif got != head.root_hash:
                self.add(
                    FindingKind.CHECKPOINT_MISMATCH,
                    size,
                    f"the signed root differs from the events: something in positions "
                    f"{previous_good}..{size - 1} was changed",
                    checkpoint=head.seq,
                )
            else:
                established.add((size, head.root_hash))
                verified += 1
                previous_good = size
        count_matches = True
        overflow = 0
        if self.head is not None:
            if self.head.size > end:
                truncated_to = max(truncated_to, self.head.size)
            elif self.head.size < end:
                overflow = end - self.head.size
            else:
                got = st.roots.get(self.head.size)
                if (
                    self.head.root_hash is not None
                    and got is not None
                    and (
                        got != self.head.root_hash
                        or (self.head.last_leaf is not None and self.head.last_leaf != st.last_leaf)
                    )
                ):
                    self.add(
                        FindingKind.STATE_MISMATCH,
                        self.head.size,
                        "the sequencer's tree head differs from the events",
                    )
        if truncated_to:
            count_matches = False
            self.add(
                FindingKind.TRUNCATED,
                end,
                f"the log ends at position {end} but was signed or recorded up to "
                f"{truncated_to} events",
                count=truncated_to - end,
            )
        if st.link_breaks:
            self._classify(st, count_matches and not overflow and not st.gaps_end)
        inserted = sum(f.count for f in self.findings if f.kind is FindingKind.INSERTED)
        if overflow > inserted and self.head is not None:
            # More events than the sequencer ever placed, not explained by the chain.
            self.add(
                FindingKind.INSERTED,
                self.head.size,
                f"{overflow} event(s) beyond the tree head the sequencer recorded "
                f"({self.head.size})",
                count=overflow,
            )
        verified += self._anchored([p for p in trusted if p[1].tree_size < k0], established)

        anchored = max((size for size, _ in established), default=0)
        if compact is not None and self.pruned.error is None:
            root: str | None = b64url(compact.root() if compact.size else EMPTY_ROOT)
        else:
            root = None
        if end > anchored and not self.findings:
            self.warnings.append(
                f"{end - anchored} event(s) from position {anchored} are not yet covered by "
                "a checkpoint"
            )
        if self.findings:
            outcome = Outcome.FAILED
        elif end > 0 and not established:
            outcome = Outcome.INDETERMINATE
        else:
            outcome = Outcome.PASSED
        findings = sorted(
            self.findings,
            key=lambda f: (f.position if f.position is not None else -1, f.kind.value),
        )
        return VerificationReport(
            outcome=outcome,
            log_id=self.log_id,
            first_position=k0,
            end_position=end,
            events_checked=st.rows,
            root_hash=root,
            checkpoints_total=len(self.checkpoints),
            checkpoints_verified=verified,
            anchored_size=anchored,
            findings=tuple(findings),
            warnings=tuple(self.warnings),
        )


def run_verifier(
    *,
    log_id: str,
    keys: CheckpointKeys,
    rows: Callable[[], Iterable[RowInput]],
    checkpoints: list[CheckpointInput],
    pruned: PrunedInput,
    head: HeadInput | None,
    findings: Iterable[Finding] = (),
    warnings: Iterable[str] = (),
) -> VerificationReport:
    """The verifier behind `verify_log` and `verify_export`. Fails closed: an unexpected
    error becomes a CORRUPT finding and a FAILED outcome, never an exception or a pass."""
    try:
        return _Verifier(
            log_id=log_id,
            keys=keys,
            rows=rows,
            checkpoints=checkpoints,
            pruned=pruned,
            head=head,
            findings=findings,
            warnings=warnings,
        ).run()
    except Exception as exc:
        return VerificationReport(
            outcome=Outcome.FAILED,
            log_id=log_id,
            first_position=pruned.size,
            end_position=pruned.size,
            events_checked=0,
            root_hash=None,
            checkpoints_total=len(checkpoints),
            checkpoints_verified=0,
            anchored_size=0,
            findings=(
                *findings,
                Finding(
                    FindingKind.CORRUPT, None, f"verification stopped: {type(exc).__name__}: {exc}"
                ),
            ),
        )


# -- the database as a source ---------------------------------------------------------------


def _snapshot(session: Session) -> None:
    """Read everything from one snapshot, so events sequenced meanwhile are not mistaken
    for insertions: REPEATABLE READ on PostgreSQL, a read transaction on SQLite."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    elif dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN")


def db_rows(session: Session, *, chunk: int = 5000) -> Iterator[RowInput]:
    """Every stored event in position order, as the verifier reads it."""
    stmt = select(_EVENTS).order_by(_EVENTS.c.position)
    for row in session.execute(stmt, execution_options={"yield_per": chunk}):
        try:
            entry = leaf_data(
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
            error = None
        except Exception as exc:
            entry, error = None, f"unreadable event: {type(exc).__name__}"
        yield RowInput(
            int(row.position),
            entry,
            bytes(row.leaf_hash or b""),
            bytes(row.prev_hash or b""),
            error,
        )


def db_inputs(session: Session) -> tuple[list[CheckpointInput], PrunedInput, HeadInput | None]:
    checkpoints = [
        CheckpointInput(
            token=row.token,
            seq=row.seq,
            tree_size=row.tree_size,
            root_hash=bytes(row.root_hash),
            anchor_size=row.anchor_size,
            anchor_proof=decode_hashes(row.anchor_proof),
        )
        for row in session.execute(select(Checkpoint).order_by(Checkpoint.seq)).scalars()
    ]
    state = session.get(TreeState, 1)
    if state is None:
        return checkpoints, PrunedInput(), None
    frontier = decode_hashes(state.pruned_frontier)
    pruned = PrunedInput(
        size=state.pruned_size,
        frontier=frontier or (),
        last_leaf=bytes(state.pruned_last_leaf),
        error=None
        if frontier is not None
        else "the hashes kept for the pruned range are unreadable",
    )
    head = HeadInput(
        size=state.size,
        root_hash=bytes(state.root_hash),
        last_leaf=bytes(state.last_leaf_hash),
        checkpoints=state.checkpoints,
    )
    return checkpoints, pruned, head


def verify_log(
    factory: sessionmaker[Session],
    *,
    keys: CheckpointKeys | None = None,
    keks: KeyEncryptionKeys | None = None,
    log_id: str = DEFAULT_LOG_ID,
    witnessed: Iterable[str] = (),
) -> VerificationReport:
    """Verify the stored log (`tongban audit verify`).

    Checkpoint keys: `keys` if pinned (an auditor's copy of the audit JWKS: trusts nothing
    the database says); else every audit key in `keys/`' table — with `keks`, only those
    whose wrapped private key proves they were made by this platform (recommended).

    `witnessed`: checkpoint tokens kept off the host (e.g. from an earlier export, see
    `witnessed_checkpoints`). The log must still contain what they signed, so a log cut
    back and stripped of its later checkpoints no longer passes."""
    with factory() as session:
        try:
            _snapshot(session)
            keys = keys or checkpoint_keys(session, keks=keks)
            checkpoints, pruned, head = db_inputs(session)
            checkpoints += [
                CheckpointInput(token, None, None, None, witnessed=True) for token in witnessed
            ]
        except AuditError as exc:
            return run_verifier(
                log_id=log_id,
                keys=CheckpointKeys({"keys": []}),
                rows=list,
                checkpoints=[],
                pruned=PrunedInput(),
                head=None,
                findings=[Finding(FindingKind.CORRUPT, None, exc.description)],
            )
        try:
            return run_verifier(
                log_id=log_id,
                keys=keys,
                rows=lambda: db_rows(session),
                checkpoints=checkpoints,
                pruned=pruned,
                head=head,
            )
        finally:
            session.rollback()
