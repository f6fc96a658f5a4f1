"""Personal identifiers at rest: encrypted (AES-256-GCM, per-field key) and found through
keyed blind indexes. An unkeyed hash of an ID number is brute-forced in seconds
(≈2^37 candidates, standards.md §7), so every index is an HMAC under a secret key."""

from __future__ import annotations

import re

from idp.errors import IdpError
from keys.vault import AppSecrets, FieldCipher


class PersonalData:
    def __init__(self, secrets: AppSecrets) -> None:
        self._secrets = secrets
        self.id_numbers = FieldCipher(secrets.get("pii-id-number"), "account.id_number")
        self.phones = FieldCipher(secrets.get("pii-phone"), "account.phone")
        self.messages = FieldCipher(secrets.get("pii-sms"), "sms_outbox.body")
        #: a TOTP secret being enrolled, carried in the page until it is confirmed
        self.pending = FieldCipher(secrets.get("totp-pending"), "totp.pending")

    def id_number_index(self, id_number: str) -> str:
        return self._secrets.hmac("blind-index", f"id_number:{id_number}")

    def phone_index(self, phone_e164: str) -> str:
        return self._secrets.hmac("blind-index", f"phone:{phone_e164}")

    def name_hash(self, name: str) -> str:
        return self._secrets.hmac("blind-index", f"name:{name.strip()}")

    def secret_hash(self, kind: str, value: str) -> str:
        """Keyed hash of a high-entropy secret (recovery code, one-time code) for storage."""
        return self._secrets.hmac("secret-hash", f"{kind}:{value}")


_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def normalise_phone(value: str) -> str:
    """A mainland mobile number in E.164 (`+8613800138000`)."""
    digits = re.sub(r"[\s-]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not _MOBILE.match(digits):
        raise IdpError(
            "A mobile number has 11 digits and starts with 13-19.",
            zh="手机号应为以13至19开头的11位数字。",
        )
    return f"+86{digits}"


def looks_like_phone(value: str) -> bool:
    try:
        normalise_phone(value)
    except IdpError:
        return False
    return True


def mask_phone(phone_e164: str) -> str:
    return f"{phone_e164[:6]}****{phone_e164[-4:]}"
