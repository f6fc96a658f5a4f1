"""Key-encryption keys (KEKs): AES-256-GCM wrapping of private keys and secrets at rest.

Rotation follows `MultiFernet`: the first KEK wraps, every listed KEK unwraps, and
`rewrap` moves material to the first one. A wrapped value names the KEK that wrapped it
(`kek-id.nonce.ciphertext`) so unwrapping needs no trial decryption.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.errors import KeysError, UnwrapError
from kit.ids import b64url, b64url_decode


@dataclass(frozen=True)
class Kek:
    kid: str
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise KeysError("a key-encryption key must be 256 bits")


class KeyEncryptionKeys:
    def __init__(self, keks: list[Kek]) -> None:
        if not keks:
            raise KeysError("at least one key-encryption key is required")
        self._keks = list(keks)
        self._by_id = {k.kid: k for k in keks}

    @property
    def primary(self) -> Kek:
        return self._keks[0]

    @property
    def ids(self) -> list[str]:
        return [k.kid for k in self._keks]

    def wrap(self, plaintext: bytes, *, aad: str) -> str:
        """Encrypt under the primary KEK. `aad` binds the value to its purpose/record."""
        nonce = os.urandom(12)
        ct = AESGCM(self.primary.key).encrypt(nonce, plaintext, aad.encode())
        return f"{self.primary.kid}.{b64url(nonce)}.{b64url(ct)}"

    def unwrap(self, wrapped: str, *, aad: str) -> bytes:
        try:
            kid, nonce, ct = wrapped.split(".")
        except ValueError as exc:
            raise UnwrapError("malformed wrapped value") from exc
        kek = self._by_id.get(kid)
        if kek is None:
            raise UnwrapError(f"key-encryption key {kid!r} is not configured")
        try:
            return AESGCM(kek.key).decrypt(b64url_decode(nonce), b64url_decode(ct), aad.encode())
        except InvalidTag as exc:
            raise UnwrapError("wrapped value failed authentication") from exc

    def needs_rewrap(self, wrapped: str) -> bool:
        return not wrapped.startswith(self.primary.kid + ".")

    def rewrap(self, wrapped: str, *, aad: str) -> str:
        return self.wrap(self.unwrap(wrapped, aad=aad), aad=aad)


def parse_kek_list(text: str) -> KeyEncryptionKeys:
    """Parse `id:base64url-key,id:base64url-key` (first wraps)."""
    keks = []
    for item in text.split(","):
        kid, _, key = item.strip().partition(":")
        if not kid or not key:
            raise KeysError("TONGBAN_KEKS entries look like id:base64url-key")
        keks.append(Kek(kid, b64url_decode(key)))
    return KeyEncryptionKeys(keks)


def new_kek() -> Kek:
    return Kek(f"kek-{secrets.token_hex(4)}", secrets.token_bytes(32))


class KekFile:
    """The embedded default: KEKs kept in a 0600 JSON file under the data directory,
    created on first start. Production deployments pass `TONGBAN_KEKS` instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load_or_create(self) -> KeyEncryptionKeys:
        if not self.path.exists():
            self._create_once(KeyEncryptionKeys([new_kek()]))
        data = json.loads(self.path.read_text())
        return KeyEncryptionKeys([Kek(k["kid"], b64url_decode(k["key"])) for k in data["keks"]])

    def _create_once(self, keks: KeyEncryptionKeys) -> None:
        """First start: several workers may race here; `link` publishes the file only if
        none exists yet, so every worker ends up with the same key."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        self._write(tmp, keks)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def _write(self, path: Path, keks: KeyEncryptionKeys) -> None:
        data = {"keks": [{"kid": k.kid, "key": b64url(k.key)} for k in keks._keks]}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())

    def save(self, keks: KeyEncryptionKeys) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        self._write(tmp, keks)
        tmp.replace(self.path)

    def prepend_new(self) -> KeyEncryptionKeys:
        current = self.load_or_create()
        rotated = KeyEncryptionKeys([new_kek(), *current._keks])
        self.save(rotated)
        return rotated
