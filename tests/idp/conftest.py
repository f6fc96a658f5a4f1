"""Fixtures for the provider core: real database (both backends), real keys and secrets.
The audit port is a recording double here; the HTTP tests use the real audit log."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from idp.config import IdpConfig
from idp.context import Context, Services
from idp.passwords import PasswordHasher
from keys.kek import KeyEncryptionKeys, new_kek
from keys.keyring import KeyRing
from keys.vault import AppSecrets
from kit.clock import FrozenClock


class RecordingAudit:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(
        self,
        session: Session,
        event: str,
        *,
        actor: str | None = None,
        subject: str | None = None,
        client_id: str | None = None,
        source: str | None = None,
        result: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.events.append(
            {
                "event": event,
                "actor": actor,
                "subject": subject,
                "client_id": client_id,
                "result": result,
                "details": dict(details or {}),
            }
        )

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def audit() -> RecordingAudit:
    return RecordingAudit()


@pytest.fixture
def services(factory: sessionmaker[Session], clock: FrozenClock, audit: RecordingAudit) -> Services:
    keks = KeyEncryptionKeys([new_kek()])
    ring = KeyRing(keks)
    with factory.begin() as s:
        ring.ensure(s, clock.now())

    def keys() -> Any:
        with factory() as s:
            return ring.load(s)

    return Services(
        config=IdpConfig(issuer="http://127.0.0.1:9"),
        clock=clock,
        secrets=AppSecrets(factory, keks, clock),
        hasher=PasswordHasher(2, time_cost=1, memory_cost=8 * 1024),
        audit=audit,
        keys=keys,
    )


@pytest.fixture
def ctx(services: Services, factory: sessionmaker[Session]) -> Iterator[Context]:
    session = factory()
    yield Context(services, session, source="127.0.0.1")
    session.rollback()
    session.close()
