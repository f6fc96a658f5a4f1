"""Application secrets (HMAC keys for indexes and hashes, field-encryption keys), each a
random 256-bit value kept wrapped in the database so every replica shares it, and the
field cipher that encrypts personal data at rest (AES-256-GCM, record-bound AAD)."""

from __future__ import annotations

import os
import secrets
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keys.errors import KeysError
from keys.kek import KeyEncryptionKeys
from keys.models import WrappedSecret
from kit.clock import Clock
from kit.ids import b64url, b64url_decode, keyed_hash


class AppSecrets:
    """Named secrets, created on first use. Cached in memory after the first unwrap."""

    def __init__(self, factory: sessionmaker[Session], keks: KeyEncryptionKeys, clock: Clock):
        self._factory = factory
        self._keks = keks
        self._clock = clock
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> bytes:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._load_or_create(name)
            return self._cache[name]

    def _load_or_create(self, name: str) -> bytes:
        aad = f"secret:{name}"
        with self._factory() as session:
            row = session.get(WrappedSecret, name)
            if row is None:
                session.add(
                    WrappedSecret(
                        name=name,
                        wrapped=self._keks.wrap(secrets.token_bytes(32), aad=aad),
                        created_at=self._clock.now(),
                    )
                )
                try:
                    session.commit()
                except IntegrityError:  # another replica created it first: use theirs
                    session.rollback()
                row = session.execute(
                    select(WrappedSecret).where(WrappedSecret.name == name)
                ).scalar_one()
            return self._keks.unwrap(row.wrapped, aad=aad)

    def preload(self, names: tuple[str, ...]) -> None:
        """Create and cache secrets up front: creating one lazily inside another open
        write transaction would wait on itself under SQLite's single writer."""
        for name in names:
            self.get(name)

    def hmac(self, name: str, value: str) -> str:
        return keyed_hash(self.get(name), value)


class FieldCipher:
    """Encrypts one kind of personal field. The AAD ties a ciphertext to its purpose so a
    value cannot be moved to another column and decrypted there."""

    VERSION = "v1"

    def __init__(self, key: bytes, purpose: str) -> None:
        self._aead = AESGCM(key)
        self._aad = purpose.encode()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode("utf-8"), self._aad)
        return f"{self.VERSION}.{b64url(nonce)}.{b64url(ct)}"

    def decrypt(self, token: str) -> str:
        try:
            version, nonce, ct = token.split(".")
            if version != self.VERSION:
                raise ValueError(version)
            return self._aead.decrypt(b64url_decode(nonce), b64url_decode(ct), self._aad).decode()
        except (ValueError, InvalidTag) as exc:
            raise KeysError("encrypted field could not be decrypted") from exc
