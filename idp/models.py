"""Tables of the OpenID provider. Secrets (client secrets, codes, refresh tokens, session
cookies) are stored only as keyed hashes; personal identifiers only encrypted, with keyed
blind indexes for look-up."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from kit.db import Base, UtcDateTime

Json = dict[str, Any]


class Account(Base):
    """A natural person (citizen or an enterprise's agent), keyed by the ID number."""

    __tablename__ = "account"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    id_number_index: Mapped[str] = mapped_column(String(64), unique=True)
    id_number_enc: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(64))
    phone_index: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    phone_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    password_hash: Mapped[str] = mapped_column(Text)
    totp_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RecoveryCode(Base):
    __tablename__ = "recovery_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Enterprise(Base):
    """A legal person keyed by its unified social credit code (public business data)."""

    __tablename__ = "enterprise"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EnterpriseAgent(Base):
    """A citizen authorised to act for an enterprise (经办人)."""

    __tablename__ = "enterprise_agent"

    enterprise_id: Mapped[str] = mapped_column(
        ForeignKey("enterprise.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), default="agent")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Client(Base):
    """A department system registered as an OpenID Connect relying party."""

    __tablename__ = "client"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    auth_method: Mapped[str] = mapped_column(String(32))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    jwks: Mapped[Json | None] = mapped_column(JSON, nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Resource servers (RFC 8707) this client may ask tokens for; their URIs become `aud`.
    resources: Mapped[list[str]] = mapped_column(JSON, default=list)
    id_token_alg: Mapped[str] = mapped_column(String(16), default="ES256")
    sector_identifier: Mapped[str] = mapped_column(String(255))
    statutory_purpose: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The department (its credit code) that operates this system; seals it may use.
    department_uscc: Mapped[str | None] = mapped_column(String(18), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SsoSession(Base):
    """A browser's single sign-on session. `id` is the public `sid`; the cookie carries a
    separate random secret stored only as a keyed hash."""

    __tablename__ = "sso_session"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime)
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: An agent (经办人) says once per session whether it acts for an enterprise (its id)
    #: or for themself (None with `acting_chosen`); `prompt=select_account` asks again.
    acting_for: Mapped[str | None] = mapped_column(String(32), nullable=True)
    acting_chosen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SessionClient(Base):
    """Which relying parties took part in a session (for single logout)."""

    __tablename__ = "session_client"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("sso_session.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("client.client_id", ondelete="CASCADE"), primary_key=True
    )
    first_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Interaction(Base):
    """A pending authorization request while the user logs in or consents."""

    __tablename__ = "interaction"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    params: Mapped[Json] = mapped_column(JSON)
    browser_hash: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    login_done: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_done: Mapped[bool] = mapped_column(Boolean, default=False)
    acting_done: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Consent(Base):
    """Scopes a citizen allowed a client; remembered until revoked (ASVS 10.7)."""

    __tablename__ = "consent"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("client.client_id", ondelete="CASCADE"), primary_key=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON)
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Grant(Base):
    """One authorization of a client: the refresh-token family and the access tokens
    issued from one code carry its id (`gid`), so revoking it revokes them all."""

    __tablename__ = "grant"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("client.client_id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), nullable=True, index=True
    )
    session_id: Mapped[str | None] = mapped_column(String(43), nullable=True, index=True)
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amr: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    claims: Mapped[Json | None] = mapped_column(JSON, nullable=True)
    #: the enterprise the agent acted for when the grant was made (`act_for` claim)
    acting_for: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: resource servers the grant covers (RFC 8707); tokens may be narrowed to some
    resources: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    absolute_expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # indexed: each server process reads recent revocations every second (token_cache)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuthorizationCode(Base):
    __tablename__ = "authorization_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.client_id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(43), nullable=True)
    grant_id: Mapped[str] = mapped_column(String(32))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512), nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime)
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    claims: Mapped[Json | None] = mapped_column(JSON, nullable=True)
    acting_for: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resources: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RefreshToken(Base):
    __tablename__ = "refresh_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grant.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RevokedAccessToken(Base):
    """Access tokens revoked before expiry (RFC 7009); kept until they would expire."""

    __tablename__ = "revoked_access_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)


class RegistryEntry(Base):
    """Population registry extract (ID number ↔ name), both as keyed hashes only."""

    __tablename__ = "registry_entry"

    id_number_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_hash: Mapped[str] = mapped_column(String(64))
    #: the phone registered to this identity (carrier real-name data), when the extract has it
    phone_index: Mapped[str | None] = mapped_column(String(64), nullable=True)
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PhoneCode(Base):
    """A one-time code sent by SMS to confirm a phone (registration, password reset)."""

    __tablename__ = "phone_code"

    id: Mapped[str] = mapped_column(String(43), primary_key=True)
    phone_index: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    #: what the code confirms (pending registration details), encrypted
    payload_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SmsOutbox(Base):
    """The development SMS sender's outbox; the message is encrypted (it holds a code)."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone_masked: Mapped[str] = mapped_column(String(32))
    body_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ThrottleCounter(Base):
    """Fixed-window failure counters shared by all replicas (when Redis is not used)."""

    __tablename__ = "throttle_counter"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class BackchannelDelivery(Base):
    """A logout token to deliver to a client's back-channel URI, retried with backoff."""

    __tablename__ = "backchannel_delivery"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.client_id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(43))
    uri: Mapped[str] = mapped_column(Text)
    logout_token: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (Index("ix_backchannel_due", "status", "next_attempt_at"),)


class ReplayGuard(Base):
    """Single-use values seen recently (client-assertion `jti`s), until they expire."""

    __tablename__ = "replay_guard"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
