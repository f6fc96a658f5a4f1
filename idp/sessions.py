"""Single sign-on sessions (ASVS V7). A session has a public id (`sid`, used in tokens)
and a separate cookie secret of 256 bits stored only as a keyed hash; every (re)login
creates a new session (ASVS 7.2.4); idle and absolute timeouts end it (ASVS 7.3)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import cast

from sqlalchemy import Executable, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp.config import IdpConfig
from idp.models import Account, SessionClient, SsoSession
from idp.ports import AuditSink
from kit.clock import Clock
from kit.db import insert_tracked
from kit.ids import new_secret

_PARTICIPANTS = cast(Table, SessionClient.__table__)


@functools.cache
def _join(dialect: str) -> Executable:
    """Built once per dialect: one statement that adds a participant unless present."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(_PARTICIPANTS).on_conflict_do_nothing(
        index_elements=[_PARTICIPANTS.c.session_id, _PARTICIPANTS.c.client_id]
    )


#: Don't write `last_seen_at` on every request: a minute of precision is enough for idle.
TOUCH_EVERY = timedelta(seconds=60)


class Sessions:
    def __init__(
        self,
        session: Session,
        *,
        clock: Clock,
        config: IdpConfig,
        secret_hash: Callable[[str], str],
        audit: AuditSink,
    ) -> None:
        self.session = session
        self.clock = clock
        self.config = config
        self.secret_hash = secret_hash
        self.audit = audit

    def create(
        self,
        account: Account,
        *,
        acr: str,
        amr: list[str],
        user_agent: str | None,
        source: str | None = None,
    ) -> tuple[SsoSession, str]:
        now = self.clock.now()
        cookie = new_secret("", 32)
        sso = insert_tracked(
            self.session,
            SsoSession,
            {
                "id": new_secret("", 24),
                "cookie_hash": self.secret_hash(cookie),
                "account_id": account.id,
                "created_at": now,
                "last_seen_at": now,
                "expires_at": now + timedelta(seconds=self.config.session_absolute_ttl),
                "auth_time": now,
                "acr": acr,
                "amr": amr,
                "user_agent": (user_agent or "")[:256] or None,
                "ended_at": None,
                "acting_for": None,
                "acting_chosen": False,
            },
        )
        self.audit.record(
            self.session,
            "session.created",
            actor=f"user:{account.id}",
            subject=account.id,
            source=source,
            details={"acr": acr, "amr": amr},
        )
        return sso, cookie

    def reauthenticate(
        self, sso: SsoSession, *, acr: str, amr: list[str], source: str | None = None
    ) -> str:
        """The same user authenticated again (login prompt, max_age, step-up): a new cookie
        secret (ASVS 7.2.4) and a new `auth_time`, but the same SSO session — its `sid`
        and the relying parties that joined it — so single logout still reaches them."""
        cookie = new_secret("", 32)
        now = self.clock.now()
        sso.cookie_hash = self.secret_hash(cookie)
        sso.auth_time = sso.last_seen_at = now
        sso.acr, sso.amr = acr, amr
        self.session.flush()
        self.audit.record(
            self.session,
            "session.created",
            actor=f"user:{sso.account_id}",
            subject=sso.account_id,
            source=source,
            details={"acr": acr, "amr": amr, "reauthenticated": True},
        )
        return cookie

    def from_cookie(self, cookie: str | None) -> SsoSession | None:
        """The live session a cookie names, or None (expired, idle, ended, unknown)."""
        if not cookie or len(cookie) > 128:
            return None
        sso = self.session.execute(
            select(SsoSession).where(SsoSession.cookie_hash == self.secret_hash(cookie))
        ).scalar_one_or_none()
        if sso is None or sso.ended_at is not None:
            return None
        now = self.clock.now()
        idle_limit = sso.last_seen_at + timedelta(seconds=self.config.session_idle_ttl)
        if now >= sso.expires_at or now >= idle_limit:
            return None
        if now - sso.last_seen_at >= TOUCH_EVERY:
            sso.last_seen_at = now
        return sso

    def add_participant(self, sso: SsoSession, client_id: str) -> None:
        """The client joins the session (single logout will reach it); once is enough."""
        connection = self.session.connection()
        connection.execute(
            _join(connection.dialect.name),
            {"session_id": sso.id, "client_id": client_id, "first_at": self.clock.now()},
        )

    def participants(self, sso: SsoSession) -> list[str]:
        return list(
            self.session.execute(
                select(SessionClient.client_id).where(SessionClient.session_id == sso.id)
            ).scalars()
        )

    def end(self, sso: SsoSession, *, reason: str, actor: str | None = None) -> bool:
        """End a session once; returns False if it had already ended."""
        result = self.session.execute(
            update(SsoSession)
            .where(SsoSession.id == sso.id, SsoSession.ended_at.is_(None))
            .values(ended_at=self.clock.now())
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        sso.ended_at = self.clock.now()
        self.audit.record(
            self.session,
            "session.ended",
            actor=actor,
            subject=sso.account_id,
            details={"reason": reason},
        )
        return True

    def get(self, sid: str) -> SsoSession | None:
        return self.session.get(SsoSession, sid)

    def live_for_account(self, account_id: str) -> list[SsoSession]:
        now = self.clock.now()
        return list(
            self.session.execute(
                select(SsoSession)
                .where(
                    SsoSession.account_id == account_id,
                    SsoSession.ended_at.is_(None),
                    SsoSession.expires_at > now,
                )
                .order_by(SsoSession.created_at.desc())
            ).scalars()
        )
