"""A pending authorization request while the user logs in, passes the second factor and
consents. Stored server-side (any replica can continue it) and bound to the browser that
started it through a cookie secret, so a link to someone else's login step is useless."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.orm import Session

from idp.config import IdpConfig
from idp.errors import InteractionGone
from idp.models import Interaction
from kit.clock import Clock
from kit.db import insert_tracked
from kit.ids import constant_time_equal, new_secret

_TABLE = cast(Table, Interaction.__table__)
_DELETE = delete(_TABLE).where(_TABLE.c.id == bindparam("id"))


class Interactions:
    def __init__(
        self,
        session: Session,
        *,
        clock: Clock,
        config: IdpConfig,
        secret_hash: Callable[[str], str],
    ) -> None:
        self.session = session
        self.clock = clock
        self.config = config
        self.secret_hash = secret_hash

    def start(
        self,
        params: dict[str, Any],
        *,
        browser_secret: str,
        stage: str,
        account_id: str | None = None,
    ) -> Interaction:
        now = self.clock.now()
        values = {
            "id": new_secret("", 24),
            "params": params,
            "browser_hash": self.secret_hash(browser_secret),
            "stage": stage,
            "account_id": account_id,
            "login_done": False,
            "consent_done": False,
            "acting_done": False,
            "created_at": now,
            "expires_at": now + timedelta(seconds=self.config.interaction_ttl),
        }
        return insert_tracked(self.session, Interaction, values)

    def load(self, interaction_id: str | None, *, browser_secret: str | None) -> Interaction | None:
        if not interaction_id or not browser_secret or len(interaction_id) > 64:
            return None
        row = self.session.get(Interaction, interaction_id)
        if row is None or row.expires_at <= self.clock.now():
            return None
        if not constant_time_equal(row.browser_hash, self.secret_hash(browser_secret)):
            return None
        return row

    def finish(self, row: Interaction) -> None:
        """The interaction is over: its row goes, and so do its unwritten changes. Only one
        request may finish it: when two submits of a step race, the second finds the row
        gone and raises `InteractionGone` (its unit of work rolls back), so one
        authorization request never yields two codes or two sessions."""
        if row in self.session:
            self.session.expunge(row)
        deleted = self.session.connection().execute(_DELETE, {"id": row.id})
        if deleted.rowcount != 1:
            raise InteractionGone()

    def purge_expired(self) -> None:
        self.session.query(Interaction).filter(Interaction.expires_at <= self.clock.now()).delete()
