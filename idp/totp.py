"""TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s, one step of skew) with each code
usable once (ASVS 6.5.1), and single-use recovery codes."""

from __future__ import annotations

import secrets
from datetime import datetime

import pyotp

from kit.ids import constant_time_equal

STEP = 30
DIGITS = 6


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, as RFC 4226 §4 recommends


def matching_step(secret: str, code: str, *, now: datetime, last_step: int) -> int | None:
    """The time step `code` belongs to (±1 step of skew), if later than `last_step`."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = int(now.timestamp()) // STEP
    for step in (current - 1, current, current + 1):
        if step > last_step and constant_time_equal(totp.generate_otp(step), code):
            return step
    return None


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).at(moment)


def provisioning_uri(secret: str, *, label: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(
        name=label, issuer_name=issuer
    )


_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_recovery_codes(count: int = 10) -> list[str]:
    """Ten codes of 12 characters (60 bits each), shown once."""
    return [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(4)) for _ in range(3))
        for _ in range(count)
    ]


def normalise_recovery_code(code: str) -> str:
    raw = code.strip().upper().replace("-", "").replace(" ", "")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))
