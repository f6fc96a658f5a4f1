"""Tamper with the stored log in every way and see `verify_log` find it, at the right
position (issue 4). The log: 20 events, checkpoints at sizes 8 and 20."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from audit import FindingKind, Outcome, VerificationReport, verify_log
from audit._entry import entry_bytes, make_entry
from audit.checkpoints import sign_checkpoint
from audit.merkle import leaf_hash, root_of
from audit.models import AuditEvent, Checkpoint
from keys.kek import KeyEncryptionKeys, new_kek
from keys.keyring import KeyRing
from keys.models import SigningKey
from keys.signer import SoftwareSigner, generate_private_key
from kit.db import transaction
from kit.ids import b64url, b64url_decode
from tests.audit.conftest import World

Tamper = Callable[[Session], None]


def _verify(world: World, tamper: Tamper) -> VerificationReport:
    assert verify_log(world.factory, keks=world.keks).ok
    with transaction(world.factory) as session:
        tamper(session)
    report = verify_log(world.factory, keks=world.keks)
    assert report.outcome is Outcome.FAILED, report.summary()
    return report


def _row(session: Session, position: int) -> AuditEvent:
    return session.execute(select(AuditEvent).where(AuditEvent.position == position)).scalar_one()


def _hash_of(row: AuditEvent) -> bytes:
    return leaf_hash(
        entry_bytes(
            make_entry(
                event_id=row.event_id,
                time=row.recorded_at,
                event=row.event,
                actor=row.actor,
                subject=row.subject,
                client_id=row.client_id,
                source=row.source,
                result=row.result,
                details=row.details,
                prev=row.prev_hash,
            )
        )
    )


def _move(session: Session, positions: list[int], by: int) -> None:
    """Renumber rows one by one (in an order that never collides on the key)."""
    for position in sorted(positions, reverse=by > 0):
        session.execute(
            update(AuditEvent).where(AuditEvent.position == position).values(position=position + by)
        )


def test_edited_event(logged: Callable[[], World]) -> None:
    report = _verify(
        logged(),
        lambda s: s.execute(
            update(AuditEvent).where(AuditEvent.position == 5).values(actor="user:mallory")
        ),
    )
    assert report.positions(FindingKind.MODIFIED) == (5,)
    assert FindingKind.CHECKPOINT_MISMATCH in report.kinds()


def test_edited_event_with_its_hash_recomputed(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        row = _row(session, 12)
        row.result = "failure"
        row.leaf_hash = _hash_of(row)

    report = _verify(logged(), tamper)
    assert report.positions(FindingKind.MODIFIED) == (12,)


def test_edited_details(logged: Callable[[], World]) -> None:
    report = _verify(
        logged(),
        lambda s: s.execute(
            update(AuditEvent).where(AuditEvent.position == 0).values(details='{"n":99}')
        ),
    )
    assert report.positions(FindingKind.MODIFIED) == (0,)


def test_deleted_event(logged: Callable[[], World]) -> None:
    report = _verify(
        logged(), lambda s: s.execute(delete(AuditEvent).where(AuditEvent.position == 5))
    )
    assert report.positions(FindingKind.DELETED) == (5,)


def test_deleted_event_with_the_log_renumbered(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        session.execute(delete(AuditEvent).where(AuditEvent.position == 5))
        _move(session, list(range(6, 20)), -1)

    report = _verify(logged(), tamper)
    assert 5 in report.positions(FindingKind.DELETED)
    assert FindingKind.TRUNCATED in report.kinds()


def test_inserted_event(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        before = _row(session, 4)
        _move(session, list(range(5, 20)), +1)
        forged = AuditEvent(
            position=5,
            event_id="f" * 32,
            recorded_at=before.recorded_at,
            event="consent.granted",
            actor="user:acct-1",
            subject="acct-1",
            client_id="dept-z",
            source=None,
            result="success",
            details="{}",
            prev_hash=before.leaf_hash,
            leaf_hash=b"",
        )
        forged.leaf_hash = _hash_of(forged)  # a careful forger links it in properly
        session.add(forged)

    report = _verify(logged(), tamper)
    assert report.positions(FindingKind.INSERTED) == (5,)
    assert FindingKind.REORDERED not in report.kinds()


def test_event_appended_after_the_tree_head(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        last = _row(session, 19)
        forged = AuditEvent(
            position=20,
            event_id="e" * 32,
            recorded_at=last.recorded_at,
            event="login.succeeded",
            actor="user:x",
            subject="x",
            client_id=None,
            source=None,
            result="success",
            details="{}",
            prev_hash=last.leaf_hash,
            leaf_hash=b"",
        )
        forged.leaf_hash = _hash_of(forged)
        session.add(forged)

    report = _verify(logged(), tamper)
    assert report.positions(FindingKind.INSERTED) == (20,)


def test_reordered_events(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        _move(session, [3], 1000)
        _move(session, [7], -4)
        _move(session, [1003], -996)

    report = _verify(logged(), tamper)
    assert sorted(report.positions(FindingKind.REORDERED)) == [3, 7]
    assert not {FindingKind.MODIFIED, FindingKind.DELETED, FindingKind.INSERTED} & report.kinds()


def test_event_moved_to_the_end(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        _move(session, [2], 1000)
        _move(session, list(range(3, 20)), -1)
        _move(session, [1002], -983)

    report = _verify(logged(), tamper)
    assert report.positions(FindingKind.REORDERED) == (19,)


def test_truncated_log(logged: Callable[[], World]) -> None:
    report = _verify(
        logged(), lambda s: s.execute(delete(AuditEvent).where(AuditEvent.position >= 15))
    )
    assert report.positions(FindingKind.TRUNCATED) == (15,)


def test_truncated_log_with_state_and_checkpoint_rolled_back(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        session.execute(delete(AuditEvent).where(AuditEvent.position >= 8))
        session.execute(delete(Checkpoint).where(Checkpoint.seq == 1))
        session.execute(text("UPDATE audit_tree_state SET size = 8"))

    report = _verify(logged(), tamper)
    assert FindingKind.CHECKPOINT_MISSING in report.kinds()


def test_forged_checkpoint_from_a_foreign_key(logged: Callable[[], World]) -> None:
    world = logged()

    def tamper(session: Session) -> None:
        real = session.get(Checkpoint, 1)
        assert real is not None
        session.execute(update(AuditEvent).where(AuditEvent.position == 9).values(result="failure"))
        # Same kid as the real key, but the forger's own private key.
        forger = SoftwareSigner(world.signer.kid, "ES256", generate_private_key("ES256"))
        real.token = sign_checkpoint(
            forger,
            log_id="tongban-audit",
            seq=1,
            tree_size=20,
            root_hash=b"\x01" * 32,
            now=world.clock.now(),
        )

    report = _verify(world, tamper)
    forged = [f for f in report.findings if f.kind is FindingKind.CHECKPOINT_FORGED]
    assert [(f.checkpoint, f.position) for f in forged] == [(1, 20)]
    assert 9 in report.positions(FindingKind.MODIFIED)


def test_checkpoint_with_an_edited_payload(logged: Callable[[], World]) -> None:
    def tamper(session: Session) -> None:
        row = session.get(Checkpoint, 0)
        assert row is not None
        header, payload, signature = row.token.split(".")
        claims: dict[str, Any] = json.loads(b64url_decode(payload))
        claims["tree_size"] = 7
        row.token = ".".join((header, b64url(json.dumps(claims).encode()), signature))

    report = _verify(logged(), tamper)
    assert [f.checkpoint for f in report.findings if f.kind is FindingKind.CHECKPOINT_FORGED] == [0]


def test_checkpoint_columns_edited(logged: Callable[[], World]) -> None:
    report = _verify(
        logged(),
        lambda s: s.execute(
            update(Checkpoint).where(Checkpoint.seq == 0).values(root_hash=b"\x00" * 32)
        ),
    )
    assert [f.checkpoint for f in report.findings if f.kind is FindingKind.CHECKPOINT_ALTERED] == [
        0
    ]


def test_a_key_planted_in_the_database_is_not_trusted(logged: Callable[[], World]) -> None:
    """Whoever writes to the database can add an `audit` key row; without the KEK its
    wrapped private part cannot be genuine, so its checkpoints prove nothing."""
    world = logged()

    def tamper(session: Session) -> None:
        ring = KeyRing(KeyEncryptionKeys([new_kek()]), algs=("ES256",), purpose="audit")
        ring._new_key(session, "ES256", world.clock.now(), world.clock.now(), "active")
        session.flush()
        planted = ring.load(session).signers["ES256"]
        assert session.get(SigningKey, planted.kid) is not None
        session.execute(
            update(AuditEvent).where(AuditEvent.position == 15).values(subject="acct-9")
        )
        row = _row(session, 15)
        row.leaf_hash = _hash_of(row)
        for later in range(16, 20):
            nxt = _row(session, later)
            nxt.prev_hash = _row(session, later - 1).leaf_hash
            nxt.leaf_hash = _hash_of(nxt)
        session.flush()
        rows = session.execute(select(AuditEvent.leaf_hash).order_by(AuditEvent.position))
        root = root_of([bytes(h) for h in rows.scalars()])
        session.execute(text("UPDATE audit_tree_state SET checkpoints = 3"))
        session.add(
            Checkpoint(
                seq=2,
                tree_size=20,
                root_hash=root,
                created_at=world.clock.now(),
                kid=planted.kid,
                token=sign_checkpoint(
                    planted,
                    log_id="tongban-audit",
                    seq=2,
                    tree_size=20,
                    root_hash=root,
                    now=world.clock.now(),
                ),
            )
        )

    report = _verify(world, tamper)
    assert [f.checkpoint for f in report.findings if f.kind is FindingKind.CHECKPOINT_FORGED] == [2]
    assert FindingKind.CHECKPOINT_MISMATCH in report.kinds()  # #1 no longer matches


def test_deleted_checkpoint(logged: Callable[[], World]) -> None:
    report = _verify(logged(), lambda s: s.execute(delete(Checkpoint).where(Checkpoint.seq == 0)))
    assert [f.checkpoint for f in report.findings if f.kind is FindingKind.CHECKPOINT_MISSING] == [
        0
    ]


def test_tampered_tree_state(logged: Callable[[], World]) -> None:
    report = _verify(
        logged(),
        lambda s: s.execute(
            text("UPDATE audit_tree_state SET root_hash = :r"), {"r": b"\x07" * 32}
        ),
    )
    assert report.positions(FindingKind.STATE_MISMATCH) == (20,)


def test_unreadable_rows_fail_closed(logged: Callable[[], World]) -> None:
    world = logged()
    report = _verify(
        world,
        lambda s: s.execute(
            update(AuditEvent).where(AuditEvent.position == 3).values(prev_hash=b"\x01\x02")
        ),
    )
    assert 3 in report.positions(FindingKind.MODIFIED)
    if world.factory.kw["bind"].dialect.name == "sqlite":  # PostgreSQL refuses bad UTF-8
        with transaction(world.factory) as session:
            session.execute(
                text("UPDATE audit_event SET details = CAST(X'FF' AS TEXT) WHERE position = 4")
            )
        report = verify_log(world.factory)
        assert report.outcome is Outcome.FAILED
        assert FindingKind.CORRUPT in report.kinds()


def test_a_clean_cut_back_is_caught_by_a_witnessed_checkpoint(
    logged: Callable[[], World],
) -> None:
    """Cut the log back to 8 events and remove every trace (later checkpoint, tree head,
    counter): the log is self-consistent again. A checkpoint kept off the host — from an
    earlier export — still remembers 20 events."""
    world = logged()
    with world.factory() as session:
        kept = session.get(Checkpoint, 1)
        assert kept is not None
        witness = kept.token
        first = session.get(Checkpoint, 0)
        assert first is not None
        root8 = first.root_hash
        leaf7 = _row(session, 7).leaf_hash
    with transaction(world.factory) as session:
        session.execute(delete(AuditEvent).where(AuditEvent.position >= 8))
        session.execute(delete(Checkpoint).where(Checkpoint.seq == 1))
        session.execute(
            text(
                "UPDATE audit_tree_state SET size = 8, checkpoints = 1, root_hash = :r, "
                "last_leaf_hash = :l, frontier = :f"
            ),
            {"r": root8, "l": leaf7, "f": json.dumps([b64url(leaf_hash_of_tree(session))])},
        )
    assert verify_log(world.factory, keks=world.keks).ok  # nothing left to contradict it
    report = verify_log(world.factory, keks=world.keks, witnessed=[witness])
    assert report.outcome is Outcome.FAILED
    assert report.positions(FindingKind.TRUNCATED) == (8,)


def leaf_hash_of_tree(session: Session) -> bytes:
    return root_of(
        bytes(h)
        for h in session.execute(
            select(AuditEvent.leaf_hash).order_by(AuditEvent.position)
        ).scalars()
    )
