"""The batch paths (group commit's `record_many`, the sequencer's bulk statements, the fast
validation) write exactly what the one-by-one paths would, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    EVENTS,
    AuditError,
    ControlCharacters,
    InvalidAuditEvent,
    PersonalDataInClear,
    verify_log,
)
from audit._bulk import delete_pending, read_pending
from audit._entry import GENESIS, chain_leaf_hashes, leaf_data
from audit.events import _fast_check, _validate_exact, check_event
from audit.merkle import leaf_hash
from audit.models import AuditEvent, PendingEvent
from kit.db import transaction
from tests.audit.conftest import World


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _token_event(i: int) -> dict[str, Any]:
    return {
        "event": "token.issued",
        "actor": f"client:dept-{i % 3}",
        "client_id": f"dept-{i % 3}",
        "source": "10.0.0.1",
        "details": {"scope": "licence:read", "grant": "client_credentials", "n": i},
    }


def test_record_many_keeps_order_and_the_log_verifies(world: World) -> None:
    events = [_token_event(i) for i in range(40)]
    # Events the fast path leaves to the exact checks, in the same batch.
    events[5]["details"] = {"ratio": 0.5, "名称": "市民政局"}
    events[6]["details"] = {"n": 20000000000}  # 11 digits, not a mobile number
    with transaction(world.factory) as session:
        world.log.record_many(session, events[:20])
    with world.factory.kw["bind"].begin() as connection:  # a bare connection, as group commit
        world.log.record_many(connection, events[20:])
    assert _count(world.factory, PendingEvent) == 40
    assert world.sequencer.sequence() == 40  # batches of 7
    with world.factory() as session:
        rows = session.execute(select(AuditEvent).order_by(AuditEvent.position)).scalars().all()
    assert [r.details for r in rows[:2]] == [
        '{"grant":"client_credentials","n":0,"scope":"licence:read"}',
        '{"grant":"client_credentials","n":1,"scope":"licence:read"}',
    ]
    assert rows[5].details == '{"ratio":0.5,"名称":"市民政局"}'
    assert [r.actor for r in rows] == [e["actor"] for e in events]
    for row in rows:
        parsed = uuid.UUID(row.event_id)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert len(row.event_id) == 32
        # RFC 9562 §5.7: the first 48 bits are the recording time in Unix milliseconds
        assert parsed.int >> 80 == int(row.recorded_at.timestamp() * 1000)
    assert len({r.event_id for r in rows}) == 40
    world.checkpoint()
    report = verify_log(world.factory, keks=world.keks)
    assert report.ok, report.summary()
    assert report.events_checked == 40


def test_one_bad_event_refuses_the_whole_batch(world: World) -> None:
    events = [_token_event(i) for i in range(5)]
    events[3]["details"] = {"phone": "13812345678"}
    with pytest.raises(PersonalDataInClear), transaction(world.factory) as session:
        world.log.record_many(session, events)
    assert _count(world.factory, PendingEvent) == 0
    with transaction(world.factory) as session:
        world.log.record_many(session, [])
    assert _count(world.factory, PendingEvent) == 0


def test_a_stored_time_in_another_form_is_hashed_as_the_verifier_reads_it(
    world: World, database_url: str
) -> None:
    """The SQLite fast path reads SQLAlchemy's stored text directly; text in any other
    form (written by hand, by another tool) takes the column's own reader."""
    world.record(2)
    if database_url.startswith("sqlite"):
        with transaction(world.factory) as session:
            session.execute(
                text("UPDATE audit_pending SET recorded_at = '2026-03-04 05:06:07' WHERE id = 1")
            )
    assert world.sequencer.sequence() == 2
    world.checkpoint()
    report = verify_log(world.factory, keks=world.keks)
    assert report.ok, report.summary()


def test_pending_rows_that_vanish_mid_batch_stop_the_batch(world: World) -> None:
    world.record(3)
    with transaction(world.factory) as session:
        connection = session.connection()
        rows = read_pending(connection, 10)
        connection.execute(text("DELETE FROM audit_pending WHERE id = :id"), {"id": rows[1][0]})
        with pytest.raises(AuditError, match="changed"):
            delete_pending(connection, rows)


def test_chained_leaf_hashes_are_the_leaf_data_hashes() -> None:
    at = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    rows = [
        (1, "1" * 32, None, "login.failed", None, "主体", "c", None, "failure", "{}"),
        (2, "2" * 32, None, "token.issued", 'client:"q"\\', None, None, "::1", "success", "{}"),
        (3, "3" * 32, None, "key.rotated", "system", None, None, None, "error", '{"k":"🎉"}'),
    ]
    prevs, leaves = chain_leaf_hashes(
        [(*row, "2026-05-06T07:08:09.123456Z") for row in rows], GENESIS
    )
    prev = GENESIS
    for row, got_prev, got_leaf in zip(rows, prevs, leaves, strict=True):
        _, event_id, _, event, actor, subject, client_id, source, result, details = row
        expected = leaf_hash(
            leaf_data(
                event_id=event_id,
                time=at,
                event=event,
                actor=actor,
                subject=subject,
                client_id=client_id,
                source=source,
                result=result,
                details=details,
                prev=prev,
            )
        )
        assert (got_prev, got_leaf) == (prev, expected)
        prev = expected


# -- the fast validation agrees with the exact checks ----------------------------------------

_TEXTS = [
    "",
    "x",
    "dept-a",
    "10.0.0.1",
    "openid profile",
    "市民政局",
    '引号"与\\反斜杠',
    "🎉",
    "line\nbreak",
    "tab\t",
    "\x7f",
    "\u0085",
    "bidi \u202e",
    "\u2028",
    "\ufeff",
    "\u00a0nbsp",
    "\ud800",
    "13812345678",
    "+86 13812345678",
    "86-13912345678",
    "12812345678",
    "1381234567",
    "138123456789",
    "11010519491231002X",
    "11010519491231002x",
    "110105194912310021",
    "A11010519491231002X",
    "20000000000",
    "x" * 300,
]
_VALUES: list[Any] = [
    *_TEXTS,
    0,
    -1,
    2**53,
    2**53 + 1,
    -(2**53) - 1,
    0.5,
    1e21,
    True,
    False,
    None,
    [],
    ["a", 1],
    ("t",),
    {},
    {"k": "v"},
    {"é": 1},
    {1: "x"},
    datetime(2026, 1, 1, tzinfo=UTC),
]


def _random_details(rng: random.Random, depth: int = 0) -> Any:
    if depth < 5 and rng.random() < 0.3:
        if rng.random() < 0.5:
            return [_random_details(rng, depth + 1) for _ in range(rng.randrange(3))]
        keys = ["scope", "grant", "n", "名", "a\nb", "13812345678", "k"]
        return {rng.choice(keys): _random_details(rng, depth + 1) for _ in range(rng.randrange(4))}
    return rng.choice(_VALUES)


def _verdict(checker: Any, *args: Any) -> Any:
    try:
        return checker(*args)
    except InvalidAuditEvent as exc:
        return type(exc)


def test_fast_checks_pass_exactly_what_the_exact_checks_pass() -> None:
    rng = random.Random(4)

    def pick(good: list[Any], bad: list[Any]) -> Any:
        return rng.choice(good if rng.random() < 0.85 else bad)

    good_texts = [None, "x", "dept-a", "10.0.0.1", "市民政局", '引号"与\\反斜杠', "🎉"]
    fast_taken = 0
    for _ in range(5000):
        fields = [
            pick(["token.issued", "key.rotated"], ["no.such_event", "TOKEN.ISSUED", None, 1]),
            pick([None, "system", "client:dept-a", "user:ab"], ["Mallory", "user:", *_TEXTS]),
            pick(good_texts, _VALUES),
            pick(good_texts, _VALUES),
            pick(good_texts, _VALUES),
            pick(["success", "failure", "error"], ["maybe", None]),
            pick([None, {"scope": "openid", "n": 1, "ok": True}], [_random_details(rng)]),
        ]
        if rng.random() < 0.2:
            details = fields[6] if isinstance(fields[6], dict) else {}
            fields[6] = {**details, "blob": "y" * rng.choice([10, 4000, 5000])}
        fast = _fast_check(EVENTS, *fields)
        exact = _verdict(
            lambda *f: _validate_exact(
                EVENTS,
                f[0],
                actor=f[1],
                subject=f[2],
                client_id=f[3],
                source=f[4],
                result=f[5],
                details=f[6],
            ),
            *fields,
        )
        if fast is not None:
            fast_taken += 1
            assert not isinstance(exact, type), (fields, exact)
            assert fast == exact
        assert _verdict(check_event, EVENTS, *fields) == exact
    assert fast_taken > 1000  # the fast path was exercised, not only the fallback


@pytest.mark.parametrize(
    ("details", "error"),
    [
        ({"a": "x", "b": "\u202e"}, ControlCharacters),
        ({"a": ["ok", {"b": "13812345678"}]}, PersonalDataInClear),
        ({"13812345678": 1}, PersonalDataInClear),
    ],
)
def test_suspect_text_anywhere_takes_the_exact_checks(
    details: dict[str, Any], error: type[InvalidAuditEvent]
) -> None:
    with pytest.raises(error):
        check_event(EVENTS, "token.issued", "client:a", details=details)
