"""Fixtures for seal tests. `province` is one PKI per test module on a real SQLite file
(crypto tests need no second backend); tests of stored state use `factory` (SQLite and
PostgreSQL) through `make_province`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from kit.db import make_engine, make_session_factory
from migrations import upgrade
from tests.signing.province import Province, make_province

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('province') / 'province.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def province(module_factory: sessionmaker[Session]) -> Province:
    return make_province(module_factory, start=START)


@pytest.fixture(scope="module")
def foreign_province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
    """Another province's PKI: its seals do not chain to our root."""
    url = f"sqlite:///{tmp_path_factory.mktemp('foreign') / 'foreign.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_province(make_session_factory(engine), start=START, name="他省")
    engine.dispose()
