"""The process-wide runtime: settings → engine, key material, services. Built once by the
app factory and by each CLI command."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit import AuditLog, Sequencer, audit_keyring, checkpoint_signer, subject_history
from idp.config import IdpConfig
from idp.context import Context, Services
from idp.oauth import TongbanServer
from idp.passwords import PasswordHasher
from idp.token_cache import AccessTokenCache
from keys.kek import KekFile, KeyEncryptionKeys, parse_kek_list
from keys.keyring import KeyRing, KeySnapshot, RotationPolicy
from keys.vault import AppSecrets
from kit.clock import Clock, SystemClock
from kit.db import make_engine, make_session_factory, transaction
from web.settings import Settings


def load_keks(settings: Settings) -> KeyEncryptionKeys:
    if settings.keks is not None:
        return parse_kek_list(settings.keks.get_secret_value())
    return KekFile(settings.data_dir / "kek.json").load_or_create()


def idp_config(settings: Settings) -> IdpConfig:
    return IdpConfig(
        issuer=settings.issuer,
        access_token_ttl=settings.access_token_ttl,
        id_token_ttl=settings.id_token_ttl,
        code_ttl=settings.code_ttl,
        refresh_idle_ttl=settings.refresh_token_idle_ttl,
        refresh_absolute_ttl=settings.refresh_token_absolute_ttl,
        session_idle_ttl=settings.session_idle_ttl,
        session_absolute_ttl=settings.session_absolute_ttl,
        interaction_ttl=settings.interaction_ttl,
        lockout_threshold=settings.account_lockout_threshold,
        lockout_seconds=settings.account_lockout_seconds,
        lockout_ceiling=settings.account_failure_ceiling,
        failures_per_address_per_minute=settings.login_failures_per_address_per_minute,
        backchannel_max_attempts=settings.backchannel_max_attempts,
    )


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    keks: KeyEncryptionKeys
    clock: Clock
    _snapshot: KeySnapshot | None = field(default=None, repr=False)
    _snapshot_at: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    #: Set when the demo province was seeded into this database; pages show a banner.
    demo: bool = False

    @cached_property
    def secrets(self) -> AppSecrets:
        return AppSecrets(self.factory, self.keks, self.clock)

    @cached_property
    def keyring(self) -> KeyRing:
        s = self.settings
        # Old keys stay published until the longest-lived token they signed has expired.
        longest = max(s.access_token_ttl, s.id_token_ttl, 300)
        return KeyRing(
            self.keks,
            RotationPolicy(
                rotate_every=timedelta(days=s.key_rotation_days),
                publish_ahead=timedelta(seconds=s.key_publish_ahead_seconds),
                retire_after=timedelta(seconds=2 * longest),
            ),
        )

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(pseudonym_key=self.secrets.get("audit-pseudonym"), clock=self.clock)

    @cached_property
    def audit_keys(self) -> KeyRing:
        return audit_keyring(self.keks)

    @cached_property
    def sequencer(self) -> Sequencer:
        return Sequencer(
            self.factory,
            self.clock,
            checkpoint_every=timedelta(seconds=self.settings.audit_checkpoint_seconds),
        )

    def audit_tick(self, *, limit: int | None = None) -> int:
        """Sequence pending events (at most `limit`); sign a checkpoint when one is due.
        Returns how many events were placed."""
        return self.sequencer.tick(
            lambda: checkpoint_signer(self.factory, self.audit_keys, self.clock, self.audit),
            limit=limit,
        ).sequenced

    def holder_history(
        self, session: Session, account_id: str, locale: str
    ) -> list[dict[str, str]]:
        """The citizen's own login and consent history for the account page."""
        page = subject_history(session, account_id, limit=20)
        return [
            {
                "at": e.time.strftime("%Y-%m-%d %H:%M UTC"),
                "text": event_text(e.event, e.result, e.client_id, locale),
            }
            for e in page.events
        ]

    @cached_property
    def services(self) -> Services:
        return Services(
            config=idp_config(self.settings),
            clock=self.clock,
            secrets=self.secrets,
            hasher=PasswordHasher(self.settings.password_hash_concurrency),
            audit=self.audit,
            keys=self.keys,
            token_cache=self.token_cache,
        )

    def keys(self) -> KeySnapshot:
        """The current signing keys, reloaded every `key_check_seconds` or when a
        scheduled activation or retirement falls due."""
        snap = self._snapshot
        fresh = time.monotonic() - self._snapshot_at < self.settings.key_check_seconds
        if (
            snap is not None
            and fresh
            and (snap.next_change is None or snap.next_change > self.clock.now())
        ):
            return snap
        with self._lock:
            with self.factory() as session:
                snap = self.keyring.load(session)
            if not snap.signers:
                self.ensure_keys()
                with self.factory() as session:
                    snap = self.keyring.load(session)
            self._snapshot, self._snapshot_at = snap, time.monotonic()
            return snap

    def ensure_keys(self) -> None:
        with transaction(self.factory) as session:
            self.keyring.ensure(session, self.clock.now())

    def tick_keys(self) -> list[tuple[str, str]]:
        with transaction(self.factory) as session:
            changes = self.keyring.tick(session, self.clock.now())
            for kid, state in changes:
                self.audit.record(session, f"key.{_KEY_EVENTS[state]}", actor="system", subject=kid)
        if changes:
            self._snapshot_at = 0.0
        return changes

    def context(
        self,
        session: Session,
        *,
        source: str | None = None,
        user_agent: str | None = None,
        may_block: bool = True,
        hold_audit: bool = False,
    ) -> Context:
        return Context(
            self.services,
            session,
            source=source,
            user_agent=user_agent,
            may_block=may_block,
            hold_audit=hold_audit,
        )

    @cached_property
    def oauth_server(self) -> TongbanServer:
        """One Authlib server for the process; each request binds its own context."""
        return TongbanServer()

    @cached_property
    def token_cache(self) -> AccessTokenCache:
        cache = AccessTokenCache(
            clock=self.clock,
            token_ttl=self.settings.access_token_ttl,
            sync_seconds=self.settings.revocation_sync_seconds,
        )
        cache.attach(self.factory)
        return cache


_KEY_EVENTS = {
    "pending": "created",
    "active": "activated",
    "retiring": "rotated",
    "retired": "retired",
}


def build_runtime(settings: Settings | None = None, *, clock: Clock | None = None) -> Runtime:
    settings = settings or Settings()
    engine = make_engine(settings.db_url)
    return Runtime(
        settings=settings,
        engine=engine,
        factory=make_session_factory(engine),
        keks=load_keks(settings),
        clock=clock or SystemClock(),
    )


_EVENT_TEXT = {
    "login.succeeded": ("登录成功", "Logged in"),
    "login.failed": ("登录失败", "Login failed"),
    "session.created": ("开始登录会话", "Session started"),
    "session.ended": ("登录会话结束", "Session ended"),
    "session.acting_selected": ("选择办事身份", "Chose whom to act for"),
    "consent.granted": ("授权政务系统", "Allowed a department system"),
    "consent.revoked": ("撤销授权", "Withdrew an authorisation"),
    "token.issued": ("政务系统获取了访问令牌", "A department system got a token"),
    "token.revoked": ("令牌已撤销", "A token was revoked"),
    "password.changed": ("修改密码", "Password changed"),
    "password.reset": ("重置密码", "Password reset"),
    "totp.enrolled": ("启用动态验证码", "One-time codes turned on"),
    "account.created": ("创建账号", "Account created"),
    "account.locked": ("账号临时锁定", "Account locked for a while"),
}


def event_text(event: str, result: str, client_id: str | None, locale: str) -> str:
    zh, en = _EVENT_TEXT.get(event, (event, event))
    text = en if locale == "en" else zh
    if client_id:
        text += f" ({client_id})"
    return text
