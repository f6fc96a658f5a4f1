"""Recording, sequencing, checkpoints, proofs and views, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    CHECKPOINT_TYP,
    CheckpointInvalid,
    Outcome,
    ProofError,
    checkpoint_keys,
    consistency_proof,
    get_event,
    inclusion_proof,
    list_events,
    open_checkpoint,
    subject_history,
    verify_log,
)
from audit.models import AuditEvent, Checkpoint, PendingEvent
from audit.sequencer import lock_log
from keys.jws import verify_compact
from keys.signer import Signer
from kit.db import transaction
from tests.audit.conftest import World


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_an_event_lives_and_dies_with_the_callers_transaction(world: World) -> None:
    def failing_action() -> None:
        with transaction(world.factory) as session:
            world.log.record(session, "client.created", actor="operator:li", client_id="x")
            raise RuntimeError("the action failed")

    with pytest.raises(RuntimeError):
        failing_action()
    assert _count(world.factory, PendingEvent) == 0
    with transaction(world.factory) as session:
        world.log.record(session, "client.created", actor="operator:li", client_id="x")
    assert _count(world.factory, PendingEvent) == 1
    assert world.sequencer.sequence() == 1
    assert _count(world.factory, PendingEvent) == 0
    assert _count(world.factory, AuditEvent) == 1


def test_sequencing_is_gap_free_chained_and_batched(world: World) -> None:
    world.record(30)
    assert world.sequencer.sequence(limit=10) == 10  # batches of 7: 7 + 3
    assert _count(world.factory, PendingEvent) == 20
    world.record(5, start=30)
    assert world.sequencer.sequence() == 25
    with world.factory() as session:
        rows = session.execute(select(AuditEvent).order_by(AuditEvent.position)).scalars().all()
        assert [r.position for r in rows] == list(range(35))
        assert [r.details for r in rows][:3] == [
            '{"n":0,"scope":"openid profile"}',
            '{"n":1,"scope":"openid profile"}',
            '{"n":2,"scope":"openid profile"}',
        ]
        assert rows[0].prev_hash == bytes(32)
        for before, after in itertools.pairwise(rows):
            assert after.prev_hash == before.leaf_hash
        head = world.sequencer.head(session)
        assert head.size == 35
    report = verify_log(world.factory)
    assert report.outcome is Outcome.INDETERMINATE  # consistent, but nothing signed yet
    world.checkpoint()
    report = verify_log(world.factory)
    assert report.ok, report.summary()
    assert report.anchored_size == 35 and report.events_checked == 35
    assert report.root_hash is not None


def test_checkpoints_are_signed_tree_heads(world: World) -> None:
    world.record(5)
    world.sequencer.sequence()
    made = world.sequencer.checkpoint(world.signer)
    assert made is not None and made.tree_size == 5 and made.seq == 0
    with world.factory() as session:
        keys = checkpoint_keys(session, keks=world.keks)
        head = open_checkpoint(made.token, keys, log_id="tongban-audit")
        assert (head.tree_size, head.root_hash, head.seq) == (5, made.root_hash, 0)
        assert world.sequencer.head(session).root_hash == made.root_hash
        header, _ = verify_compact(
            made.token, keys._keyset(False), algorithms=["ES256"], typ=CHECKPOINT_TYP
        )
        assert header["kid"] == world.signer.kid
        with pytest.raises(CheckpointInvalid):
            open_checkpoint(made.token, keys, log_id="another-log")
    # On schedule: nothing new → no checkpoint; grown but too soon → none; later → one.
    # The signer is asked for only when a checkpoint is due.
    asked: list[int] = []

    def signer() -> Signer:
        asked.append(1)
        return world.signer

    assert world.sequencer.tick(signer).checkpoint is None
    world.record(1, start=5)
    assert world.sequencer.tick(signer).sequenced == 1
    assert not asked
    world.clock.advance(301)
    result = world.sequencer.tick(signer)
    assert result.checkpoint is not None and result.checkpoint.tree_size == 6
    assert result.checkpoint.seq == 1 and asked == [1]


def test_only_one_sequencer_at_a_time(world: World) -> None:
    world.record(3)
    holder = world.factory()
    try:
        assert lock_log(holder)
        assert world.sequencer.sequence(wait=False) == 0  # another replica holds the lock
        assert _count(world.factory, PendingEvent) == 3
    finally:
        holder.rollback()
        holder.close()
    assert world.sequencer.sequence(wait=False) == 3


def test_inclusion_and_consistency_proofs_against_signed_heads(world: World) -> None:
    world.record(9)
    first = world.checkpoint()
    world.record(14, start=9)
    second = world.checkpoint()
    with world.factory() as session:
        keys = checkpoint_keys(session)
        event_id = session.execute(
            select(AuditEvent.event_id).where(AuditEvent.position == 4)
        ).scalar_one()
        proof = inclusion_proof(session, event_id=event_id)
        assert proof.tree_size == second and proof.checkpoint is not None
        signed = open_checkpoint(proof.checkpoint, keys, log_id="tongban-audit")
        proof.verify(signed.root_hash)
        early = inclusion_proof(session, position=4, tree_size=first)
        early.verify(
            open_checkpoint(early.checkpoint or "", keys, log_id="tongban-audit").root_hash
        )
        with pytest.raises(ProofError):
            proof.verify(early.root_hash)
        grown = consistency_proof(session, first, second)
        grown.verify()
        assert grown.new_root == signed.root_hash
        with pytest.raises(ProofError):
            inclusion_proof(session, position=second)


def test_views_filter_page_and_show_pending(world: World) -> None:
    world.record(6, subject="acct-1")
    with transaction(world.factory) as session:
        world.log.record(
            session, "login.succeeded", actor="user:acct-2", subject="acct-2", source="10.9.9.9"
        )
        world.clock.advance(1)
        world.log.record(
            session,
            "login.failed",
            subject="acct-2",
            result="failure",
            details={"reason": "password"},
        )
        world.log.record(session, "client.created", actor="operator:wang", client_id="c9")
    world.sequencer.sequence()
    with transaction(world.factory) as session:
        world.log.record(
            session,
            "consent.granted",
            actor="user:acct-2",
            subject="acct-2",
            client_id="dept-a",
            details={"scopes": ["openid"]},
        )
    with world.factory() as session:
        page = list_events(session, prefix="login", limit=10)
        assert [e.event for e in page.events] == ["login.failed", "login.succeeded"]
        assert page.events[0].details == {"reason": "password"}
        assert page.next_before is None
        first = list_events(session, subject="acct-1", limit=4)
        assert [e.position for e in first.events] == [5, 4, 3, 2]
        second = list_events(session, subject="acct-1", limit=4, before=first.next_before)
        assert [e.position for e in second.events] == [1, 0]
        assert [e.event for e in list_events(session, actor="operator:wang").events] == [
            "client.created"
        ]
        assert list_events(session, result="failure").events[0].event == "login.failed"
        start = first.events[-1].time
        ranged = list_events(
            session, subject="acct-1", since=start, until=start + timedelta(seconds=2)
        )
        assert [e.position for e in ranged.events] == [3, 2]
        history = subject_history(session, "acct-2")
        assert [e.event for e in history.events] == [
            "consent.granted",
            "login.failed",
            "login.succeeded",
        ]
        assert history.events[0].pending and history.events[0].position is None
        assert all(e.subject == "acct-2" for e in history.events)
        assert [
            e.event for e in subject_history(session, "acct-2", include_pending=False).events
        ] == ["login.failed", "login.succeeded"]
        found = get_event(session, history.events[1].event_id)
        assert found is not None and found.position == 7
        with pytest.raises(Exception, match="prefix"):
            list_events(session, prefix="login%")


def test_a_tampered_tree_state_stops_sequencing_but_keeps_events_pending(world: World) -> None:
    world.record(3)
    world.sequencer.sequence()
    with transaction(world.factory) as session:
        session.execute(text("UPDATE audit_tree_state SET frontier = '[\"AAAA\"]'"))
    world.record(2, start=3)
    with pytest.raises(Exception, match="corrupt"):
        world.sequencer.sequence()
    assert _count(world.factory, PendingEvent) == 2


def test_checkpoint_count_is_kept(logged: Callable[[], World]) -> None:
    world = logged()
    assert _count(world.factory, Checkpoint) == 2
