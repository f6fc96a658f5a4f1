"""Shared fixtures. Every storage test runs on SQLite and on PostgreSQL: each test
session gets a fresh PostgreSQL database on the local server, migrated with Alembic.
Under CI=true a missing PostgreSQL fails the run instead of skipping."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from kit.db import Base, make_engine, make_session_factory
from migrations import import_models, upgrade
from tests.web.live import LiveServer, Receiver, start_receiver, start_server

PG_ADMIN_DSN = os.environ.get("TONGBAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"PostgreSQL is required in CI: {exc}") from exc
        pytest.skip(f"PostgreSQL not reachable: {exc}")


def _fresh_pg_database() -> tuple[str, str]:
    name = f"tongban_test_{os.getpid()}_{secrets.token_hex(3)}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def _drop_pg_database(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database URL; once per backend per test session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "tongban.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url
        return
    name, url = _fresh_pg_database()
    try:
        upgrade(url)
        yield url
    finally:
        _drop_pg_database(name)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url, pool_size=5)
    yield eng
    eng.dispose()


def _wipe(engine: Engine) -> None:
    import_models()
    present = set(inspect(engine).get_table_names())
    tables = [t for t in Base.metadata.sorted_tables if t.name in present]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                conn.execute(table.delete())


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory on an empty database (both backends)."""
    _wipe(engine)
    return make_session_factory(engine)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as s:
        yield s


# -- a live server (tests/web, tests/browser) --------------------------------------------


@contextmanager
def served(
    backend: str, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """A real `tongban serve` on a fresh database of `backend`, stopped afterwards."""
    if backend == "sqlite":
        url, name = f"sqlite:///{data_dir / 'tongban.db'}", None
    else:
        name, url = _fresh_pg_database()
    upgrade(url)
    server = start_server(url, data_dir, extra_env=extra_env)
    try:
        yield server
    finally:
        server.stop()
        server.runtime.engine.dispose()
        if name:
            _drop_pg_database(name)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with served(request.param, tmp_path_factory.mktemp(f"live-{request.param}")) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()
