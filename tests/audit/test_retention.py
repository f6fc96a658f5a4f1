"""Retention: pruning old events keeps the remaining log and every checkpoint verifiable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from audit import (
    AuditError,
    FindingKind,
    PruneRefused,
    RetentionPolicy,
    export_log,
    inclusion_proof,
    list_events,
    prune,
    verify_export,
    verify_log,
)
from audit.models import AuditEvent, Checkpoint
from kit.db import transaction
from tests.audit.conftest import World

DAY = 86400


def _events(world: World) -> list[int]:
    with world.factory() as session:
        return list(
            session.execute(select(AuditEvent.position).order_by(AuditEvent.position)).scalars()
        )


def _aged(world: World) -> None:
    """Checkpoints at 10, 15 (old) and 20 (young), then 190 days pass."""
    world.record(10)
    world.checkpoint()
    world.record(5, start=10)
    world.checkpoint()
    world.clock.advance(100 * DAY)
    world.record(5, start=15)
    world.checkpoint()
    world.clock.advance(90 * DAY)


def test_retention_cannot_go_below_six_months() -> None:
    with pytest.raises(AuditError):
        RetentionPolicy.days(179)
    assert RetentionPolicy().keep_for == timedelta(days=180)
    assert RetentionPolicy.days(365).keep_for == timedelta(days=365)


def test_pruning_keeps_the_rest_verifiable(world: World, tmp_path: Path) -> None:
    _aged(world)
    dry = prune(world.factory, world.clock, dry_run=True)
    assert dry.removed == 15 and _events(world)[0] == 0
    result = prune(world.factory, world.clock, log=world.log, actor="operator:zhao")
    assert (result.removed, result.first_position, result.boundary_checkpoint) == (15, 15, 1)
    assert _events(world) == list(range(15, 20))
    report = verify_log(world.factory, keks=world.keks)
    assert report.ok, report.summary()
    assert (report.first_position, report.checkpoints_verified) == (15, 3)
    assert report.anchored_size == 20

    # The log goes on: new events, checkpoints, proofs, views, exports, another prune.
    world.checkpoint()  # also covers the `audit.pruned` event
    with world.factory() as session:
        pruned_event = list_events(session, prefix="audit.").events[0]
        assert pruned_event.details["removed"] == 15
        assert pruned_event.actor == "operator:zhao"
        inclusion_proof(session, position=16).verify()
        with pytest.raises(AuditError):
            inclusion_proof(session, position=3)
    world.record(6, start=20)
    world.checkpoint()
    world.clock.advance(200 * DAY)
    world.record(2, start=26)
    world.checkpoint()
    second = prune(world.factory, world.clock)
    assert second.first_position == 27 and second.removed == 12
    report = verify_log(world.factory, keks=world.keks)
    assert report.ok, report.summary()
    assert report.checkpoints_verified == 6
    path = tmp_path / "after-prune.jsonl"
    export_log(world.factory, path, clock=world.clock)
    assert verify_export(path).ok
    assert prune(world.factory, world.clock).removed == 0  # nothing old enough any more


def test_tampering_with_what_pruning_kept_is_found(world: World) -> None:
    _aged(world)
    prune(world.factory, world.clock)
    with transaction(world.factory) as session:
        session.execute(
            update(Checkpoint)
            .where(Checkpoint.seq == 0)
            .values(anchor_proof='["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]')
        )
    report = verify_log(world.factory)
    assert [
        f.checkpoint for f in report.findings if f.kind is FindingKind.CHECKPOINT_UNANCHORED
    ] == [0]
    with transaction(world.factory) as session:
        session.execute(
            text("UPDATE audit_tree_state SET pruned_last_leaf = :h"), {"h": b"\x05" * 32}
        )
    report = verify_log(world.factory)
    assert report.positions(FindingKind.STATE_MISMATCH) == (15,)


def test_pruning_refuses_a_range_that_does_not_verify(world: World) -> None:
    _aged(world)
    with transaction(world.factory) as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.position == 4).values(actor="user:mallory")
        )
    with pytest.raises(PruneRefused):
        prune(world.factory, world.clock)
    with world.factory() as session:
        assert session.execute(select(func.count()).select_from(AuditEvent)).scalar() == 20


def test_nothing_is_pruned_without_a_checkpoint_inside_the_old_range(world: World) -> None:
    world.record(4)
    world.clock.advance(200 * DAY)
    world.record(4, start=4)
    world.checkpoint()  # covers old and young events: not a boundary
    assert prune(world.factory, world.clock).removed == 0
    assert len(_events(world)) == 8
