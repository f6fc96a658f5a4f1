"""The event vocabulary and the checks at the interface: unknown names, oversized details,
control characters and personal identifiers in clear are refused with a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import (
    EVENTS,
    AuditLog,
    ControlCharacters,
    DetailsTooLarge,
    EventRegistry,
    EventType,
    InvalidAuditEvent,
    InvalidField,
    PersonalDataInClear,
    UnknownEvent,
)
from audit._entry import entry_bytes, leaf_data, make_entry
from audit.models import PendingEvent
from kit.canonical import canonical_json
from kit.clock import FrozenClock

LOG = AuditLog(pseudonym_key=b"k" * 32, clock=FrozenClock())


def test_vocabulary_is_artifact_dot_verb_and_covers_the_emitters() -> None:
    names = {t.name for t in EVENTS}
    for name in names:
        artifact, _, verb = name.partition(".")
        assert artifact and verb and name == name.lower()
    used = {  # what idp/, keys/ and the runtime emit today, and what signing/ will
        "session.created",
        "session.ended",
        "login.succeeded",
        "login.failed",
        "account.locked",
        "account.created",
        "password.changed",
        "totp.enrolled",
        "totp.removed",
        "consent.granted",
        "consent.revoked",
        "authorization_code.issued",
        "authorization_code.consumed",
        "authorization_code.reused",
        "token.issued",
        "token.refreshed",
        "token.revoked",
        "refresh_token.reused",
        "grant.revoked",
        "client.created",
        "client.removed",
        "key.created",
        "key.rotated",
        "key.activated",
        "key.retired",
        "kek.rotated",
        "logout.backchannel_sent",
        "logout.backchannel_failed",
        "seal.created",
        "seal.suspended",
        "seal.revoked",
        "document.sealed",
        "licence.issued",
        "enterprise.created",
        "enterprise.agent_added",
    }
    assert used <= names
    assert "login.failed" in EVENTS.holder_visible
    assert "client.created" not in EVENTS.holder_visible


def test_registry_refuses_bad_names_and_duplicates() -> None:
    registry = EventRegistry()
    registry.register("thing.done", "a thing was done")
    for bad in ("Thing.done", "thing", "thing.done.twice", "thing.", ".done", "thing.do ne"):
        with pytest.raises(InvalidField):
            registry.register(bad, "bad")
    with pytest.raises(InvalidField):
        registry.register("thing.done", "again")
    extended = EVENTS.extended(EventType("widget.frobbed", "a widget was frobbed"))
    assert "widget.frobbed" in extended and "widget.frobbed" not in EVENTS


def _record(session: Session, event: str = "token.issued", **kwargs: Any) -> None:
    LOG.record(session, event, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"event": "token.isued"}, UnknownEvent),
        ({"event": "TOKEN.ISSUED"}, UnknownEvent),
        ({"details": {"blob": "x" * 5000}}, DetailsTooLarge),
        ({"details": {"note": "two\nlines"}}, ControlCharacters),
        ({"details": {"note": "nul\x00"}}, ControlCharacters),
        ({"details": {"note\r": "key with CR"}}, ControlCharacters),
        ({"details": {"note": "bidi \u202e override"}}, ControlCharacters),
        ({"source": "10.0.0.1\n2024 fake line"}, ControlCharacters),
        ({"subject": "acct\x1b[31m"}, ControlCharacters),
        ({"actor": "Mallory"}, InvalidField),
        ({"actor": "user:"}, InvalidField),
        ({"actor": "user:a b"}, InvalidField),
        ({"actor": ":x"}, InvalidField),
        ({"result": "maybe"}, InvalidField),
        ({"subject": ""}, InvalidField),
        ({"subject": "s" * 129}, InvalidField),
        ({"client_id": 42}, InvalidField),
        ({"details": ["not", "a", "mapping"]}, InvalidField),
        ({"details": {"when": datetime.now(UTC)}}, InvalidField),
        ({"details": {"n": float("nan")}}, InvalidField),
        ({"details": {"a": {"b": {"c": {"d": {"e": {}}}}}}}, InvalidField),
        ({"details": {"id_number": "11010519491231002X"}}, PersonalDataInClear),
        ({"details": {"who": "citizen 440524188001010014 asked"}}, PersonalDataInClear),
        ({"subject": "13812345678"}, PersonalDataInClear),
        ({"details": {"phone": "+86 13812345678"}}, PersonalDataInClear),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    session: Session, kwargs: dict[str, Any], error: type[InvalidAuditEvent]
) -> None:
    with pytest.raises(error) as caught:
        _record(session, **kwargs)
    assert caught.value.status == 400 and caught.value.description
    session.flush()
    assert session.execute(select(func.count()).select_from(PendingEvent)).scalar() == 0


def test_good_input_passes(session: Session) -> None:
    _record(
        session,
        actor="user:3f2a",
        subject="3f2a",
        client_id="dept-a",
        source="2001:db8::1",
        details={
            "scope": ["openid"],
            "n": 1,
            "ok": True,
            "ratio": 0.5,
            "name": "市民政局",
            "none": None,
            "grant": "0123456789abcdef0123456789abcdef",
            "amount": "12345678901234567890",
        },
    )
    _record(session, "key.rotated", actor="system")
    _record(session, "account.created", actor="self-registration")
    _record(
        session,
        "login.failed",
        result="failure",
        details={"who": LOG.pseudonymise("11010519491231002X")},
    )
    session.flush()
    assert session.execute(select(func.count()).select_from(PendingEvent)).scalar() == 4


def test_pseudonyms_are_keyed_and_stable() -> None:
    other = AuditLog(pseudonym_key=b"q" * 32, clock=FrozenClock())
    value = "11010519491231002X"
    assert LOG.pseudonymise(value) == LOG.pseudonymise(value)
    assert LOG.pseudonymise(value) != other.pseudonymise(value)
    assert value not in LOG.pseudonymise(value)
    with pytest.raises(InvalidField):
        AuditLog(pseudonym_key=b"short", clock=FrozenClock())


def test_leaf_entry_is_rfc8785_canonical() -> None:
    entry = make_entry(
        event_id="0" * 32,
        time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        event="consent.granted",
        actor="user:ab",
        subject="ab",
        client_id=None,
        source="10.0.0.1",
        result="success",
        details=canonical_json({"b": '引号"与\\反斜杠', "a": [1, 2]}).decode(),
        prev=bytes(range(32)),
    )
    assert entry_bytes(entry) == canonical_json(entry)
    # The sequencer's and verifier's direct serialisation gives the same bytes.
    for actor, details in [
        ("user:ab", "{}"),
        (None, '{"k":"\\u0001 é 中 🎉"}'),
        ('client:"quoted"\\', '{"x":"\\""}'),
    ]:
        fields: dict[str, Any] = {
            "event_id": "1" * 32,
            "time": datetime(2026, 5, 6, tzinfo=UTC),
            "event": "login.failed",
            "actor": actor,
            "subject": "主体",
            "client_id": "c",
            "source": None,
            "result": "failure",
            "details": details,
            "prev": bytes(32),
        }
        assert leaf_data(**fields) == canonical_json(make_entry(**fields))
    assert json.loads(entry_bytes(entry))["time"] == "2026-01-02T03:04:05.678901Z"
