"""Reading the log for views: the admin list with filters, and a holder's own history.

Plain functions over a `Session`; pages run newest first with keyset paging on the
position (`before`), which stays fast and stable while events are appended. Events still
waiting for the sequencer can be included on the first page, so a citizen sees the login
they just made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, select
from sqlalchemy.orm import Session

from audit.errors import InvalidField
from audit.events import EVENTS, EventRegistry
from audit.models import EVENT_TABLE, PENDING_TABLE

__all__ = ["MAX_PAGE", "AuditRecord", "EventPage", "get_event", "list_events", "subject_history"]

MAX_PAGE = 500
_EVENTS = EVENT_TABLE
_PENDING = PENDING_TABLE
_PREFIX = re.compile(r"[a-z0-9_.]{1,64}")


@dataclass(frozen=True)
class AuditRecord:
    """One event as a view shows it. `position` is None while it waits to be sequenced."""

    position: int | None
    event_id: str
    time: datetime
    event: str
    actor: str | None
    subject: str | None
    client_id: str | None
    source: str | None
    result: str
    details: dict[str, Any]

    @property
    def pending(self) -> bool:
        return self.position is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "id": self.event_id,
            "time": self.time.isoformat(),
            "event": self.event,
            "actor": self.actor,
            "subject": self.subject,
            "client_id": self.client_id,
            "source": self.source,
            "result": self.result,
            "details": self.details,
        }


@dataclass(frozen=True)
class EventPage:
    events: tuple[AuditRecord, ...]
    #: Pass as `before` to get the next (older) page; None on the last page.
    next_before: int | None


def _details(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"_unreadable": True}
    return value if isinstance(value, dict) else {"_unreadable": True}


def _record(row: Any, position: int | None) -> AuditRecord:
    return AuditRecord(
        position,
        row.event_id,
        row.recorded_at,
        row.event,
        row.actor,
        row.subject,
        row.client_id,
        row.source,
        row.result,
        _details(row.details),
    )


def _filters(
    table: Table,
    *,
    names: tuple[str, ...] | None,
    prefix: str | None,
    actor: str | None,
    subject: str | None,
    client_id: str | None,
    result: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if prefix is not None:
        if not _PREFIX.fullmatch(prefix):
            raise InvalidField("an event prefix holds lower-case letters, digits, _ and . only")
        where.append(table.c.event.startswith(prefix, autoescape=True))
    if names is not None:
        where.append(table.c.event.in_(names))
    for column, value in (
        ("actor", actor),
        ("subject", subject),
        ("client_id", client_id),
        ("result", result),
    ):
        if value is not None:
            where.append(table.c[column] == value)
    if since is not None:
        where.append(table.c.recorded_at >= since)
    if until is not None:
        where.append(table.c.recorded_at < until)
    return where


def _page(
    session: Session,
    where: list[ColumnElement[bool]],
    pending_where: list[ColumnElement[bool]] | None,
    before: int | None,
    limit: int,
) -> EventPage:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidField(f"a page holds 1 to {MAX_PAGE} events")
    records: list[AuditRecord] = []
    if pending_where is not None and before is None:
        stmt: Select[Any] = (
            select(_PENDING).where(*pending_where).order_by(_PENDING.c.id.desc()).limit(limit)
        )
        records.extend(_record(row, None) for row in session.execute(stmt))
    room = limit - len(records)
    next_before = None
    if room > 0:
        cond = list(where)
        if before is not None:
            cond.append(_EVENTS.c.position < before)
        stmt = select(_EVENTS).where(*cond).order_by(_EVENTS.c.position.desc()).limit(room)
        rows = [_record(row, int(row.position)) for row in session.execute(stmt)]
        records.extend(rows)
        if len(rows) == room and rows:
            next_before = rows[-1].position
    return EventPage(tuple(records), next_before)


def list_events(
    session: Session,
    *,
    prefix: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    client_id: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 50,
    include_pending: bool = False,
) -> EventPage:
    """Events newest first, filtered by event-name prefix (`login.` or `login`), actor,
    subject, client, result and time range [since, until) — for the admin API."""
    args = {
        "names": None,
        "prefix": prefix,
        "actor": actor,
        "subject": subject,
        "client_id": client_id,
        "result": result,
        "since": since,
        "until": until,
    }
    where = _filters(_EVENTS, **args)  # type: ignore[arg-type]
    pending = _filters(_PENDING, **args) if include_pending else None  # type: ignore[arg-type]
    return _page(session, where, pending, before, limit)


def subject_history(
    session: Session,
    subject: str,
    *,
    registry: EventRegistry = EVENTS,
    before: int | None = None,
    limit: int = 50,
    include_pending: bool = True,
) -> EventPage:
    """A holder's own history for the account page: the holder-visible events (logins,
    sessions, consent, credentials, licence access) whose subject is their account id."""
    names = registry.holder_visible
    where = _filters(
        _EVENTS,
        names=names,
        prefix=None,
        actor=None,
        subject=subject,
        client_id=None,
        result=None,
        since=None,
        until=None,
    )
    pending = (
        _filters(
            _PENDING,
            names=names,
            prefix=None,
            actor=None,
            subject=subject,
            client_id=None,
            result=None,
            since=None,
            until=None,
        )
        if include_pending
        else None
    )
    return _page(session, where, pending, before, limit)


def get_event(session: Session, event_id: str) -> AuditRecord | None:
    row = session.execute(select(_EVENTS).where(_EVENTS.c.event_id == event_id)).first()
    if row is not None:
        return _record(row, int(row.position))
    row = session.execute(select(_PENDING).where(_PENDING.c.event_id == event_id)).first()
    return None if row is None else _record(row, None)
