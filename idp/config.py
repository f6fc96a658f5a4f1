"""Configuration the provider core needs, built by `web/` from the validated settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdpConfig:
    issuer: str
    access_token_ttl: int = 600
    id_token_ttl: int = 600
    code_ttl: int = 60
    refresh_idle_ttl: int = 14 * 86400
    refresh_absolute_ttl: int = 30 * 86400
    session_idle_ttl: int = 1800
    session_absolute_ttl: int = 12 * 3600
    interaction_ttl: int = 600
    #: failures from one address that lock the account for that address
    lockout_threshold: int = 10
    lockout_seconds: int = 900
    #: consecutive failures from anywhere that lock the account for everyone
    lockout_ceiling: int = 100
    failures_per_address_per_minute: int = 50
    backchannel_max_attempts: int = 6

    def url(self, path: str) -> str:
        return f"{self.issuer}{path}"
