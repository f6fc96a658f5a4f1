"""Every setting of Tongban, read from `TONGBAN_*` environment variables and validated at
start-up. This module is the one place a default is defined; the README lists them.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONGBAN_", extra="ignore")

    #: development allows http issuers and creates key material on first start;
    #: production refuses placeholders and insists on https.
    mode: Literal["development", "production"] = "development"
    #: The OpenID Provider's issuer identifier (OIDC Discovery §3); base of every URL.
    issuer: str = "http://127.0.0.1:8000"
    #: Where the embedded default keeps its SQLite file and key-encryption key.
    data_dir: Path = Path("var")
    #: SQLAlchemy URL; default a SQLite file in `data_dir`. PostgreSQL in production.
    database_url: str | None = None
    #: Key-encryption keys as `id:base64url,id:base64url` (first wraps, all unwrap).
    #: Unset: a KEK file in `data_dir` (development only).
    keks: SecretStr | None = None
    #: Optional Redis for short-lived shared state (rate-limit counters).
    redis_url: str | None = None

    # Lifetimes, in seconds.
    access_token_ttl: int = Field(600, ge=60, le=3600)
    id_token_ttl: int = Field(600, ge=60, le=3600)
    #: FAPI 2.0 §5.3.2.1: authorization codes live at most 60 s.
    code_ttl: int = Field(60, ge=10, le=60)
    refresh_token_idle_ttl: int = Field(14 * 86400, ge=3600)
    refresh_token_absolute_ttl: int = Field(30 * 86400, ge=3600)
    #: NIST SP 800-63B-4 AAL2 reauthentication as adopted in standards.md (30 min / 12 h).
    session_idle_ttl: int = Field(1800, ge=60)
    session_absolute_ttl: int = Field(12 * 3600, ge=300)
    interaction_ttl: int = Field(600, ge=60, le=3600)

    # Throttling.
    #: Failed logins tolerated per source address per minute before slowing it down.
    login_failures_per_address_per_minute: int = Field(50, ge=1)
    #: Each login that starts creates a stored interaction: an address may start this many
    #: a minute (generous for a service hall behind one address, not for a flood).
    interactions_per_address_per_minute: int = Field(300, ge=1)
    #: Failures from one address that lock the account for that address, for a while.
    account_lockout_threshold: int = Field(10, ge=3, le=100)
    account_lockout_seconds: int = Field(900, ge=30)
    #: Consecutive failures from anywhere that lock the account for everyone (NIST ≤ 100).
    account_failure_ceiling: int = Field(100, ge=10, le=100)
    #: How many argon2id hashes run at once per process; the rest queue, so a flood of
    #: logins cannot take every core from the token endpoint. Default: half the cores.
    password_hash_concurrency: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1
    )

    # Keys.
    key_rotation_days: int = Field(90, ge=1)
    key_publish_ahead_seconds: int = Field(600, ge=0)
    key_check_seconds: int = Field(30, ge=1)
    #: A token revoked through another server process stops passing introspection and
    #: userinfo here within this many seconds (this process's own revocations at once).
    revocation_sync_seconds: float = Field(1.0, gt=0, le=60)

    # Audit log (全程留痕).
    #: Events older than this are pruned (GB/T 22239 and the Cybersecurity Law: ≥ 6 months).
    audit_retention_days: int = Field(180, ge=180)
    #: How often a signed checkpoint is made when the log has grown.
    audit_checkpoint_seconds: int = Field(300, ge=10)
    #: Record every client_credentials token issuance (high-rate, group-committed).
    #: Turning it off exists to measure its cost and is refused in production.
    audit_machine_tokens: bool = True
    #: How often each replica's audit process looks for pending events of other writers.
    audit_sequence_seconds: float = Field(2.0, gt=0, le=60)
    #: An audit process that leaves a request's events unanswered this long is taken for
    #: stuck: it is replaced and the waiting requests fail.
    audit_answer_timeout_seconds: float = Field(30.0, ge=1, le=600)

    #: Addresses of reverse proxies whose X-Forwarded-For is believed (RFC 9700 §4.13).
    trusted_proxies: list[str] = Field(default_factory=list)
    #: Back-channel logout delivery: attempts before giving up.
    backchannel_max_attempts: int = Field(6, ge=1)

    @field_validator("issuer")
    @classmethod
    def _issuer_shape(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("TONGBAN_ISSUER must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("TONGBAN_ISSUER has no query or fragment (OIDC Discovery §3)")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.mode == "production":
            if not self.issuer.startswith("https://"):
                raise ValueError("production requires an https TONGBAN_ISSUER")
            if self.keks is None:
                raise ValueError("production requires TONGBAN_KEKS (no KEK file on disk)")
            if not self.audit_machine_tokens:
                raise ValueError("production audits every token issuance")
            if self.database_url is None or self.database_url.startswith("sqlite"):
                raise ValueError("production requires a PostgreSQL TONGBAN_DATABASE_URL")
        if self.refresh_token_absolute_ttl < self.refresh_token_idle_ttl:
            raise ValueError("refresh-token absolute lifetime is shorter than its idle one")
        return self

    @cached_property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'tongban.db'}"

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")
