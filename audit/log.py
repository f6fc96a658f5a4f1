"""`AuditLog`: the one small interface `idp/`, `keys/`, `signing/` and `certvault/` emit
through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from audit.errors import InvalidField
from audit.events import EVENTS, EventRegistry, validate_event
from audit.models import PENDING_TABLE
from kit.clock import Clock
from kit.ids import keyed_hash, new_id

__all__ = ["PSEUDONYM_PREFIX", "AuditLog"]

#: Marks a pseudonymised value, so a reader knows it is not the identifier itself.
PSEUDONYM_PREFIX = "pn_"
_INSERT = insert(PENDING_TABLE)


class AuditLog:
    """Records events into the durable outbox inside the caller's transaction.

    `record` writes one `audit_pending` row with the caller's session: if it cannot be
    written, `record` (or the caller's commit) raises and the action fails (GB/T 22239 §8.1.4.3: the
    audit cannot be bypassed); if the action rolls back, its event goes too. The
    `Sequencer` later gives pending events their place in the tree, in batches, so
    concurrent writers never contend on the tree.
    """

    def __init__(
        self, *, pseudonym_key: bytes, clock: Clock, registry: EventRegistry | None = None
    ) -> None:
        if not isinstance(pseudonym_key, bytes) or len(pseudonym_key) < 16:
            raise InvalidField("the audit pseudonym key must be at least 128 bits")
        self._key = pseudonym_key
        self._clock = clock
        self.registry = registry or EVENTS

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
        """Append inside the caller's transaction: if it cannot be written, the action
        fails; if the action rolls back, the event goes too.

        Raises `InvalidAuditEvent` (unknown name, malformed actor, details over 4 KiB of
        canonical JSON, control characters, an ID or mobile number in clear).
        """
        checked = validate_event(
            self.registry,
            event,
            actor=actor,
            subject=subject,
            client_id=client_id,
            source=source,
            result=result,
            details=details,
        )
        # A Core INSERT, executed now in the caller's transaction: a third of the ORM's
        # cost, and a failure surfaces here, at the action, not at some later flush.
        session.execute(
            _INSERT,
            {
                "event_id": new_id(),
                "recorded_at": self._clock.now(),
                "event": checked.event,
                "actor": checked.actor,
                "subject": checked.subject,
                "client_id": checked.client_id,
                "source": checked.source,
                "result": checked.result,
                "details": checked.details_json,
            },
        )

    def record_many(self, session: Session, events: list[dict[str, Any]]) -> None:
        """Append a batch (group commit of high-rate events) with one executemany. Every
        event is validated first: one bad event refuses the whole batch."""
        now = self._clock.now()
        rows = []
        for fields in events:
            checked = validate_event(
                self.registry,
                fields["event"],
                actor=fields.get("actor"),
                subject=fields.get("subject"),
                client_id=fields.get("client_id"),
                source=fields.get("source"),
                result=fields.get("result", "success"),
                details=fields.get("details"),
            )
            rows.append(
                {
                    "event_id": new_id(),
                    "recorded_at": now,
                    "event": checked.event,
                    "actor": checked.actor,
                    "subject": checked.subject,
                    "client_id": checked.client_id,
                    "source": checked.source,
                    "result": checked.result,
                    "details": checked.details_json,
                }
            )
        if rows:
            session.execute(_INSERT, rows)

    def pseudonymise(self, value: str) -> str:
        """A keyed HMAC-SHA256 pseudonym of a personal identifier (ID number, phone, a
        typed user name): stable, so events about one person can be correlated by whoever
        holds the key, and not reversible by brute force without it — an unkeyed hash of
        an ID number falls to enumeration of its ~2^37 values (standards.md §7)."""
        return PSEUDONYM_PREFIX + keyed_hash(self._key, value)
