"""Process-wide services and the per-request unit of work that the protocol code uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy.orm import Session

from idp.accounts import Accounts
from idp.claims import pairwise_sub
from idp.clients import ClientCache, Clients
from idp.config import IdpConfig
from idp.enterprises import Enterprises
from idp.interactions import Interactions
from idp.models import Client
from idp.passwords import PasswordHasher
from idp.pii import PersonalData
from idp.ports import AuditSink
from idp.sessions import Sessions
from idp.token_cache import AccessTokenCache
from idp.tokens import Tokens, WouldBlock
from keys.keyring import KeySnapshot
from keys.vault import AppSecrets
from kit.clock import Clock

#: Every application secret the provider uses (see `keys.vault.AppSecrets`).
SECRET_NAMES = (
    "totp-pending",
    "pii-id-number",
    "pii-phone",
    "pii-sms",
    "blind-index",
    "secret-hash",
    "pairwise-sub",
    "csrf",
)


@dataclass
class Services:
    """Built once per process by `web/`."""

    config: IdpConfig
    clock: Clock
    secrets: AppSecrets
    hasher: PasswordHasher
    audit: AuditSink
    keys: Callable[[], KeySnapshot]
    client_cache: ClientCache = field(default_factory=ClientCache)
    #: when set, access-token checks skip known signatures and revocations in memory
    token_cache: AccessTokenCache | None = None

    def __post_init__(self) -> None:
        self.secrets.preload(SECRET_NAMES)

    @cached_property
    def pii(self) -> PersonalData:
        return PersonalData(self.secrets)

    def secret_hash(self, value: str) -> str:
        return self.secrets.hmac("secret-hash", value)


class _HeldAudit:
    """An audit sink that holds a unit of work's events for its owner to write in one
    statement before commit (`Context.record_deferred`): the transaction stays the unit
    (no commit without its events), with one insert instead of one per event."""

    def __init__(self, held: list[dict[str, Any]], sink: AuditSink) -> None:
        self._held = held
        self._sink = sink

    def record(self, session: Session, event: str, **fields: Any) -> None:
        del session  # written with the owner's session at commit
        self._held.append({"event": event, **fields})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


class Context:
    """One unit of work: a database session plus the request's origin. The caller owns
    the transaction (commit or roll back); services only flush."""

    def __init__(
        self,
        services: Services,
        session: Session,
        *,
        source: str | None = None,
        user_agent: str | None = None,
        may_block: bool = True,
        hold_audit: bool = False,
    ) -> None:
        self.services = services
        self.session = session
        self.source = source
        self.user_agent = user_agent
        #: False on the event loop: a step that would read the database raises
        #: `WouldBlock`, and the caller moves the request to the thread pool
        self.may_block = may_block
        self.config = services.config
        self.clock = services.clock
        #: high-rate events (machine token issuance) the caller records in a batch, and
        #: with `hold_audit` every event of the unit of work
        self.deferred: list[dict[str, Any]] = []
        self.audit: AuditSink = (
            _HeldAudit(self.deferred, services.audit) if hold_audit else services.audit
        )

    def audit_later(self, event: str, **fields: Any) -> None:
        """Queue a high-rate event for group commit by the caller (see web.audit_process);
        the caller must not answer before it is durably recorded."""
        self.deferred.append({"event": event, **fields})

    def record_deferred(self) -> None:
        """Record queued events in this unit of work, in one statement where the sink
        can (a login records three events)."""
        if not self.deferred:
            return
        sink = self.services.audit
        many = getattr(sink, "record_many", None)
        if many is not None:
            many(self.session, self.deferred)
        else:
            for fields in self.deferred:
                sink.record(self.session, **fields)
        self.deferred.clear()

    @cached_property
    def keys(self) -> KeySnapshot:
        return self.services.keys()

    @cached_property
    def accounts(self) -> Accounts:
        s = self.services
        return Accounts(
            self.session,
            pii=s.pii,
            hasher=s.hasher,
            clock=s.clock,
            config=s.config,
            audit=self.audit,
        )

    @cached_property
    def clients(self) -> Clients:
        return Clients(
            self.session,
            clock=self.clock,
            secret_hash=self.services.secret_hash,
            audit=self.audit,
            cache=self.services.client_cache,
        )

    @cached_property
    def sessions(self) -> Sessions:
        return Sessions(
            self.session,
            clock=self.clock,
            config=self.config,
            secret_hash=self.services.secret_hash,
            audit=self.audit,
        )

    @cached_property
    def tokens(self) -> Tokens:
        return Tokens(
            self.session,
            keys=self.keys,
            config=self.config,
            clock=self.clock,
            secret_hash=self.services.secret_hash,
            cache=self.services.token_cache,
            client_active=lambda client_id: self.active_client(client_id) is not None,
        )

    def active_client(self, client_id: str) -> Client | None:
        """An active client registration; on the event loop (`may_block` off) only from
        the cache, else `WouldBlock`."""
        if not self.may_block and not self.services.client_cache.fresh(client_id):
            raise WouldBlock("the client registration must be read from the database")
        return self.clients.get(client_id)

    @cached_property
    def interactions(self) -> Interactions:
        return Interactions(
            self.session,
            clock=self.clock,
            config=self.config,
            secret_hash=self.services.secret_hash,
        )

    @cached_property
    def enterprises(self) -> Enterprises:
        return Enterprises(self.session, clock=self.clock, audit=self.audit)

    def sub_for(self, client: Client, account_id: str) -> str:
        return pairwise_sub(
            self.services.secrets.get("pairwise-sub"), client.sector_identifier, account_id
        )
