"""The bulk statements of the hot paths, written for each database.

Group commit hands `record_many` hundreds of events at once and the sequencer moves a
thousand at a time: through the ORM or Core `executemany` each row costs several
microseconds of parameter processing in Python, more than everything else the row needs.
Here a batch is one statement whose parameters are whole columns on PostgreSQL
(`unnest` of arrays, sent in binary: `%b`; psycopg's text form of an array escapes each
element with a regular expression, ten times the cost), and the driver's own
`executemany` of plain tuples on SQLite (a loop in C). The values written are the values
hashed: nothing is converted between the sequencer's hash and the row it stores.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect

from audit._entry import format_time
from audit.errors import AuditError
from audit.models import PENDING_TABLE

__all__ = [
    "SQLITE_WRITERS",
    "PendingRow",
    "WriterGate",
    "delete_pending",
    "insert_events",
    "insert_pending",
    "read_pending",
]

#: (event_id, event, actor, subject, client_id, source, result, details JSON)
NewEvent = tuple[str, str, str | None, str | None, str | None, str | None, str, str]


#: A pending event as read for sequencing: (id, event_id, stored time, event, actor,
#: subject, client_id, source, result, details, time). The stored time is the database's
#: own value of `recorded_at`, written back unchanged; the time is its RFC 3339 form, as
#: hashed. A plain tuple: a thousand objects a batch would cost more than the hashing.
PendingRow = tuple[
    int, str, Any, str, str | None, str | None, str | None, str | None, str, str, str
]


def _dialect(connection: Connection) -> str:
    name = connection.dialect.name
    if name not in ("postgresql", "sqlite"):
        raise AuditError(f"the audit log does not support {name}")
    return name


# -- audit_pending: the writers' side --------------------------------------------------------

_PG_INSERT_PENDING = (
    "INSERT INTO audit_pending "
    "(event_id, recorded_at, event, actor, subject, client_id, source, result, details) "
    "SELECT e, %b::timestamptz, ev, a, s, c, src, r, d "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[]) WITH ORDINALITY AS u(e, ev, a, s, c, src, r, d, n) "
    # Ids in the order given, so one writer's events keep their order in the tree.
    "ORDER BY n"
)
_SQLITE_INSERT_PENDING = (
    "INSERT INTO audit_pending "
    "(event_id, recorded_at, event, actor, subject, client_id, source, result, details) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class WriterGate:
    """Lets the sequencer give way, between its batches, to writers of this process that
    wait for SQLite's write lock.

    SQLite has one write lock, and a writer that finds it taken sleeps ever longer
    between attempts (1, 2, 5, 10, 15, 20, 25 … ms). The sequencer releases the lock
    between batches only for an instant, so while it works through a backlog, batch
    after batch, a waiting writer — and every request waiting on its group commit —
    sleeps through all of it. Writers register here while they insert; the sequencer
    waits for them before its next batch."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._writers = 0

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writers += 1
        try:
            yield
        finally:
            with self._changed:
                self._writers -= 1
                self._changed.notify_all()

    def wait_for_writers(self, timeout: float) -> None:
        """Return when no writer is inserting, or after `timeout` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._writers == 0, timeout)


#: One per process: the SQLite deployment is a single process.
SQLITE_WRITERS = WriterGate()


def insert_pending(connection: Connection, recorded_at: datetime, rows: list[NewEvent]) -> None:
    """Insert validated events, all recorded at `recorded_at`, in one statement."""
    if not rows:
        return
    if _dialect(connection) == "postgresql":
        columns: list[Any] = [list(column) for column in zip(*rows, strict=True)]
        connection.exec_driver_sql(_PG_INSERT_PENDING, (recorded_at, *columns))
        return
    # The column's own conversion (UTC, the text form SQLAlchemy reads back), done once.
    stored = _time_writer(connection)(recorded_at)
    with SQLITE_WRITERS.writing():
        connection.exec_driver_sql(
            _SQLITE_INSERT_PENDING,
            [(r[0], stored, r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows],
        )


def _time_writer(connection: Connection) -> Callable[[datetime], Any]:
    return _time_writer_for(connection.dialect)


@functools.cache
def _time_writer_for(dialect: Dialect) -> Callable[[datetime], Any]:
    process = PENDING_TABLE.c.recorded_at.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


# -- the sequencer's side -----------------------------------------------------------------------


_SQLITE_READ = (
    "SELECT id, event_id, recorded_at, event, actor, subject, client_id, source, result, "
    "details FROM audit_pending ORDER BY id LIMIT ?"
)
_PG_READ = _SQLITE_READ.replace("?", "%s")


def read_pending(connection: Connection, limit: int) -> list[PendingRow]:
    """The oldest `limit` pending events by insertion id."""
    dialect = _dialect(connection)
    # The driver's cursor: rows as plain tuples, without a result object per row.
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(_PG_READ if dialect == "postgresql" else _SQLITE_READ, (limit,))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    read = format_time if dialect == "postgresql" else _sqlite_time_reader(connection)
    return [(*row, read(row[2])) for row in rows]


def _sqlite_time_reader(connection: Connection) -> Callable[[str], str]:
    """RFC 3339 from SQLite's stored text, which SQLAlchemy writes as
    `YYYY-MM-DD HH:MM:SS.ffffff` (UTC): the same characters, so no parsing is needed.
    Text in any other form goes through the column's reader, as the verifier's does."""
    parse = _time_reader_for(connection.dialect)

    def read(stored: str) -> str:
        if (
            type(stored) is str
            and len(stored) == 26
            and stored[10] == " "
            and stored[19] == "."
            and stored[:4].isdigit()
        ):
            return f"{stored[:10]}T{stored[11:]}Z"
        value = parse(stored) if parse is not None else stored
        if not isinstance(value, datetime):
            raise AuditError("an audit_pending row has no valid recorded_at", detail=repr(stored))
        return format_time(value)

    return read


@functools.cache
def _time_reader_for(dialect: Dialect) -> Callable[[Any], Any] | None:
    column_type = PENDING_TABLE.c.recorded_at.type
    return column_type.dialect_impl(dialect).result_processor(dialect, None)


_PG_INSERT_EVENTS = (
    "INSERT INTO audit_event (position, event_id, recorded_at, event, actor, subject, "
    "client_id, source, result, details, prev_hash, leaf_hash) "
    "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::timestamptz[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::bytea[])"
)
_SQLITE_INSERT_EVENTS = (
    "INSERT INTO audit_event (position, event_id, recorded_at, event, actor, subject, "
    "client_id, source, result, details, prev_hash, leaf_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_events(
    connection: Connection,
    first: int,
    rows: list[PendingRow],
    prev_hashes: list[bytes],
    leaf_hashes: list[bytes],
) -> None:
    """Write `rows` into the log at positions `first`, `first + 1`, …"""
    if _dialect(connection) == "postgresql":
        columns: list[Any] = [list(column) for column in zip(*rows, strict=True)]
        connection.exec_driver_sql(
            _PG_INSERT_EVENTS,
            (list(range(first, first + len(rows))), *columns[1:10], prev_hashes, leaf_hashes),
        )
        return
    connection.exec_driver_sql(
        _SQLITE_INSERT_EVENTS,
        [
            (first + i, *row[1:10], prev, leaf)
            for i, (row, prev, leaf) in enumerate(zip(rows, prev_hashes, leaf_hashes, strict=True))
        ],
    )


def delete_pending(connection: Connection, rows: list[PendingRow]) -> None:
    """Delete exactly the pending rows just sequenced; raise (the batch rolls back, the
    events stay pending) if the count disagrees."""
    if _dialect(connection) == "postgresql":
        # By id, never `id <= max`: on PostgreSQL a smaller id can commit after a larger
        # one, and must stay pending for the next batch rather than vanish.
        result = connection.exec_driver_sql(
            "DELETE FROM audit_pending WHERE id = ANY(%b::bigint[])", ([row[0] for row in rows],)
        )
    else:
        # SQLite has one writer at a time and the sequencer holds the write lock from
        # before its read: the rows read, the oldest by id, are all rows up to the last.
        result = connection.exec_driver_sql(
            "DELETE FROM audit_pending WHERE id <= ?", (rows[-1][0],)
        )
    if result.rowcount != len(rows):
        raise AuditError(
            "the pending audit events changed while being sequenced; nothing was moved",
            detail=f"deleted {result.rowcount} of {len(rows)}",
        )
