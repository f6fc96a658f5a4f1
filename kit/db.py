"""Database base: SQLAlchemy 2 metadata, engine set-up for SQLite and PostgreSQL.

The request (or CLI command) owns the transaction: services only `flush()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run while one writer commits; busy_timeout makes the
    # writers of several threads queue instead of failing with "database is locked".
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine for a SQLite file or a PostgreSQL URL.

    A SQLite file's folder is created if missing, so a first start needs no set-up. Errors
    do not quote the statement's values: they hold personal data (pseudonyms, encrypted
    identifiers, addresses) and end up in logs.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_Row = TypeVar("_Row", bound=Base)
_INSERTS: dict[type[Any], Any] = {}


def insert_row(session: Session, model: type[Base], values: dict[str, Any]) -> None:
    """Insert one row with a prepared Core statement, in the session's transaction and
    outside its object tracking (for rows the unit of work does not read back)."""
    statement = _INSERTS.get(model)
    if statement is None:
        statement = _INSERTS[model] = insert(model)
    session.connection().execute(statement, values)


def insert_tracked(session: Session, model: type[_Row], values: dict[str, Any]) -> _Row:
    """Insert one row with a prepared Core statement and return it as a persistent object
    of the session, as if it had been loaded: later changes to it are tracked and flushed.

    The ORM's own insert (`add` and `flush`) costs several times the statement; the
    login path inserts a few rows per request. `values` must name every column the
    caller will read (server-side defaults are not fetched back). Unlike a pending object,
    the row is not dropped from the session if the transaction rolls back: a caller that
    goes on after a rollback must not use it."""
    insert_row(session, model, values)
    row = model(**values)
    make_transient_to_detached(row)
    session.add(row)
    return row


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def write_lock(session: Session, key: int) -> None:
    """Serialise a read-then-write section across processes for the rest of the
    transaction: a transaction-scoped advisory lock on PostgreSQL; on SQLite the database
    write lock, taken before the first read (`BEGIN IMMEDIATE`) so two processes cannot
    both read "nothing there yet" and both write."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        conn = session.connection()
        raw = conn.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
