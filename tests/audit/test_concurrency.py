"""Several OS processes record and sequence at once on PostgreSQL; afterwards the log holds
exactly the committed events, once each, gap-free, and verifies (issue 4)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audit import verify_log
from audit.models import AuditEvent, PendingEvent
from tests.audit import workers
from tests.audit.conftest import World

WRITERS, PER_WRITER, SEQUENCERS = 4, 100, 2


def test_concurrent_writers_and_sequencers_lose_nothing(
    world: World, database_url: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several processes writing at once is the PostgreSQL deployment")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WRITERS + SEQUENCERS, mp_context=context) as pool:
        writers = [pool.submit(workers.record, database_url, w, PER_WRITER) for w in range(WRITERS)]
        stop = tmp_path / "stop"
        sequencers = [
            pool.submit(workers.sequence, database_url, str(stop)) for _ in range(SEQUENCERS)
        ]
        committed = {subject for future in writers for subject in future.result()}
        stop.touch()
        placed_by_workers = sum(future.result() for future in sequencers)
    placed = placed_by_workers + world.sequencer.sequence()
    world.checkpoint()

    expected = WRITERS * (PER_WRITER - len(range(3, PER_WRITER, 7)))
    assert len(committed) == expected and placed == expected
    with factory() as session:
        assert session.execute(select(func.count()).select_from(PendingEvent)).scalar() == 0
        rows = session.execute(
            select(AuditEvent.position, AuditEvent.subject).order_by(AuditEvent.position)
        ).all()
    assert [r.position for r in rows] == list(range(expected))  # gap-free
    assert sorted(r.subject for r in rows) == sorted(committed)  # each once, none lost
    # Each writer's own events keep their order.
    for w in range(WRITERS):
        mine = [int(r.subject.split("-")[1]) for r in rows if r.subject.startswith(f"w{w}-")]
        assert mine == sorted(mine)
    report = verify_log(factory, keks=world.keks)
    assert report.ok, report.summary()
    assert report.anchored_size == expected
