"""What the provider core needs from outside, as protocols: the audit log (implemented by
`audit.AuditLog`), the population-registry check and the SMS sender."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.orm import Session


class AuditSink(Protocol):
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
    ) -> None: ...


class SmsSender(Protocol):
    def send(self, session: Session, phone_e164: str, text: str) -> None: ...
