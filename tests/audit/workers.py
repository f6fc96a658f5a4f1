"""Process entry points of the concurrency test (importable by `spawn` children)."""

from __future__ import annotations

import os
import time

from audit import AuditLog, Sequencer
from kit.clock import SystemClock
from kit.db import make_engine, make_session_factory, transaction


def record(url: str, worker: int, count: int) -> list[str]:
    """Record `count` events, one transaction each; every 7th action fails after
    recording, so its event must vanish. Returns the subjects that were committed."""
    engine = make_engine(url, pool_size=1)
    factory = make_session_factory(engine)
    log = AuditLog(pseudonym_key=b"w" * 32, clock=SystemClock())
    committed = []
    try:
        for i in range(count):
            subject = f"w{worker}-{i}"
            try:
                with transaction(factory) as session:
                    log.record(
                        session,
                        "token.issued",
                        actor=f"client:w{worker}",
                        subject=subject,
                        client_id=f"w{worker}",
                        details={"i": i},
                    )
                    if i % 7 == 3:
                        raise RuntimeError("the action failed after its event")
                committed.append(subject)
            except RuntimeError:
                pass
    finally:
        engine.dispose()
    return committed


def sequence(url: str, stop_file: str) -> int:
    """Sequence in a loop, competing with the other sequencers, until `stop_file` exists."""
    engine = make_engine(url, pool_size=1)
    sequencer = Sequencer(make_session_factory(engine), SystemClock(), batch_size=25)
    placed = 0
    deadline = time.monotonic() + 60
    try:
        while not os.path.exists(stop_file) and time.monotonic() < deadline:
            placed += sequencer.sequence(wait=bool(placed % 2))
            time.sleep(0.005)
    finally:
        engine.dispose()
    return placed
