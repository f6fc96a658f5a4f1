"""The unit of work's context (`idp/context.py`): with `hold_audit`, events wait for the
owner and are written together before commit, in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from idp.context import Context, Services
from tests.idp.conftest import RecordingAudit


class BatchingAudit(RecordingAudit):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[dict[str, Any]]] = []

    def record_many(self, session: Session, events: list[dict[str, Any]]) -> None:
        self.batches.append([dict(e) for e in events])


def test_held_events_wait_for_the_owner_and_go_in_one_batch(
    services: Services, factory: sessionmaker[Session]
) -> None:
    sink = BatchingAudit()
    services.audit = sink
    with factory() as session:
        ctx = Context(services, session, hold_audit=True)
        ctx.audit.record(session, "login.succeeded", actor="user:a", subject="a")
        ctx.sessions.audit.record(session, "session.created", subject="a")
        ctx.accounts.audit.record(session, "login.failed", result="failure")
        assert sink.events == [] and sink.batches == []  # nothing written yet

        ctx.record_deferred()
        assert [[e["event"] for e in batch] for batch in sink.batches] == [
            ["login.succeeded", "session.created", "login.failed"]
        ]
        ctx.record_deferred()  # nothing twice
        assert len(sink.batches) == 1


def test_without_holding_events_are_recorded_at_once(
    services: Services, factory: sessionmaker[Session], audit: RecordingAudit
) -> None:
    with factory() as session:
        ctx = Context(services, session)
        ctx.audit.record(session, "login.succeeded", subject="a")
        assert [e["event"] for e in audit.events] == ["login.succeeded"]


def test_a_sink_without_batches_gets_the_held_events_one_by_one(
    services: Services, factory: sessionmaker[Session], audit: RecordingAudit
) -> None:
    with factory() as session:
        ctx = Context(services, session, hold_audit=True)
        ctx.audit.record(session, "login.succeeded", subject="a")
        ctx.audit.record(session, "session.created", subject="a")
        assert audit.events == []
        ctx.record_deferred()
        assert [e["event"] for e in audit.events] == ["login.succeeded", "session.created"]
