"""Passwords per NIST SP 800-63B-4 §3.1.1.2 and ASVS 6.2: length only (no composition
rules), a blocklist of common passwords, full Unicode, no truncation; argon2id hashing
under a concurrency limit so a flood of logins cannot starve other endpoints."""

from __future__ import annotations

import threading
import unicodedata
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher as Argon2
from argon2.exceptions import InvalidHashError, VerificationError

from idp.errors import PasswordRejected

MIN_LENGTH = 8  # ASVS 6.2.1 with a second factor available; 15 recommended
MAX_LENGTH = 256  # well above the 64 that must be allowed (ASVS 6.2.9)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words = set(FREQUENCY_LISTS["passwords"])  # ranked list of 30,000 leaked passwords
    extra = resources.files("idp").joinpath("data/common-passwords-zh.txt").read_text("utf-8")
    words.update(line.strip() for line in extra.splitlines() if line and line[0] != "#")
    return frozenset(w.lower() for w in words)


def normalise(password: str) -> str:
    """NFKC before hashing so the same password typed on different keyboards matches."""
    return unicodedata.normalize("NFKC", password)


def check_password(password: str, *, context: tuple[str, ...] = ()) -> None:
    """Raise `PasswordRejected` with the reason; `context` holds words specific to the
    user (name, phone) that must not be the password."""
    text = normalise(password)
    if len(text) < MIN_LENGTH:
        raise PasswordRejected(
            f"Use at least {MIN_LENGTH} characters; a long phrase is best.",
            zh=f"密码至少{MIN_LENGTH}个字符，建议使用较长的短语。",
        )
    if len(text) > MAX_LENGTH:
        raise PasswordRejected(
            f"Use at most {MAX_LENGTH} characters.", zh=f"密码最多{MAX_LENGTH}个字符。"
        )
    lowered = text.lower()
    if lowered in common_passwords() or len(set(text)) <= 2:
        raise PasswordRejected(
            "This password is too common; choose another.", zh="该密码过于常见，请换一个。"
        )
    if any(word and word.lower() in lowered for word in context if len(word) >= 4):
        raise PasswordRejected(
            "Do not use your own details in the password.", zh="密码中不要包含个人信息。"
        )


class PasswordHasher:
    """argon2id (RFC 9106) with at most `concurrency` hashes at once."""

    def __init__(
        self,
        concurrency: int = 2,
        *,
        time_cost: int = 2,
        memory_cost: int = 19 * 1024,
        parallelism: int = 1,
    ) -> None:
        # OWASP's argon2id baseline: m=19 MiB, t=2, p=1.
        self._argon = Argon2(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        self._gate = threading.BoundedSemaphore(concurrency)
        self._dummy = self._argon.hash("tongban-dummy-password-for-timing")

    def hash(self, password: str) -> str:
        with self._gate:
            return self._argon.hash(normalise(password))

    def verify(self, stored: str, password: str) -> bool:
        with self._gate:
            try:
                return self._argon.verify(stored, normalise(password))
            except (VerificationError, InvalidHashError):
                return False

    def verify_dummy(self, password: str) -> None:
        """Spend the same time as a real check for an unknown user (ASVS 6.3.8)."""
        self.verify(self._dummy, password)

    def needs_rehash(self, stored: str) -> bool:
        return self._argon.check_needs_rehash(stored)
