"""Fixtures of the audit tests: a frozen clock, an audit log, a genuine checkpoint signer
(a `KeyRing(purpose="audit")` key in the database) and a helper that fills the log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditLog, Sequencer, audit_keyring, checkpoint_signer
from keys.kek import KeyEncryptionKeys, new_kek
from keys.signer import Signer
from kit.clock import FrozenClock
from kit.db import transaction


@dataclass
class World:
    factory: sessionmaker[Session]
    clock: FrozenClock
    log: AuditLog
    keks: KeyEncryptionKeys
    signer: Signer
    sequencer: Sequencer

    def record(
        self, count: int, *, event: str = "token.issued", subject: str = "acct-1", start: int = 0
    ) -> None:
        with transaction(self.factory) as session:
            for i in range(start, start + count):
                self.log.record(
                    session,
                    event,
                    actor="client:dept-a",
                    subject=subject,
                    client_id="dept-a",
                    source="10.1.2.3",
                    details={"n": i, "scope": "openid profile"},
                )
                self.clock.advance(1)

    def checkpoint(self) -> int:
        self.sequencer.sequence()
        made = self.sequencer.checkpoint(self.signer)
        assert made is not None
        return made.tree_size


@pytest.fixture
def world(factory: sessionmaker[Session]) -> World:
    clock = FrozenClock()
    keks = KeyEncryptionKeys([new_kek()])
    log = AuditLog(pseudonym_key=b"p" * 32, clock=clock)
    signer = checkpoint_signer(factory, audit_keyring(keks), clock)
    return World(factory, clock, log, keks, signer, Sequencer(factory, clock, batch_size=7))


@pytest.fixture
def logged(world: World) -> Callable[[], World]:
    """20 events under checkpoints at 8 and 20."""

    def make() -> World:
        world.record(8)
        world.checkpoint()
        world.record(12, start=8)
        world.checkpoint()
        return world

    return make
