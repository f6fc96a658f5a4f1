"""A PKCS#11 `Signer`: the private key is generated inside a token (an HSM, or SoftHSM2 in
tests) as sensitive and non-extractable, and never leaves it; only signatures do.

The caller sees the same `Signer` protocol as for software keys (`keys/signer.py`).
Mechanisms (PKCS#11 v2.40 §2.3.6, §2.1.14): ES256 hashes with SHA-256 here and signs with
raw `CKM_ECDSA`, which every token supports (SoftHSM2 2.6 has no `CKM_ECDSA_SHA256`); the
token returns r||s, exactly the JWS form (RFC 7518 §3.4). PS256 uses
`CKM_SHA256_RSA_PKCS_PSS` with MGF1-SHA-256 and a 32-byte salt (RFC 7518 §3.5).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from keys.errors import KeysError
from keys.signer import public_jwk_of

__all__ = ["Pkcs11Config", "Pkcs11Error", "Pkcs11Signer", "Pkcs11Token"]


class Pkcs11Error(KeysError):
    code = "pkcs11_error"


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the token is: the module (`.so`) path, the token label and the user PIN."""

    module: str
    token_label: str
    user_pin: str

    def __repr__(self) -> str:  # never print the PIN
        return f"Pkcs11Config(module={self.module!r}, token_label={self.token_label!r})"


class Pkcs11Token:
    """One logged-in session on a token, shared by the signers made from it.

    A PKCS#11 session is not safe for concurrent use, so every call holds a lock."""

    def __init__(self, config: Pkcs11Config) -> None:
        try:
            import pkcs11
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise Pkcs11Error("python-pkcs11 is not installed") from exc
        self._pkcs11 = pkcs11
        self._lock = threading.Lock()
        try:
            lib = pkcs11.lib(config.module)
            token = lib.get_token(token_label=config.token_label)
            self._session = token.open(user_pin=config.user_pin, rw=True)
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
            raise Pkcs11Error(
                "the PKCS#11 token could not be opened",
                detail=f"{config!r}: {exc!r}",
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def generate(self, label: str, alg: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        """Generate a key pair inside the token under `label`; return its public key.

        The private key is a token object with CKA_SENSITIVE true and CKA_EXTRACTABLE
        false (PKCS#11 v2.40 §4.9), so no call can read it out, wrapped or not."""
        p = self._pkcs11
        attr = p.Attribute
        private_template = {
            attr.SENSITIVE: True,
            attr.EXTRACTABLE: False,
            attr.PRIVATE: True,
            attr.SIGN: True,
        }
        with self._lock:
            if self._find(label) is not None:
                raise Pkcs11Error(f"the token already has a key labelled {label}")
            try:
                if alg == "ES256":
                    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

                    params = self._session.create_domain_parameters(
                        p.KeyType.EC,
                        {attr.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                        local=True,
                    )
                    public, _private = params.generate_keypair(
                        store=True,
                        label=label,
                        id=label.encode(),
                        private_template=private_template,
                    )
                    der = encode_ec_public_key(public)
                elif alg == "PS256":
                    from pkcs11.util.rsa import encode_rsa_public_key

                    public, _private = self._session.generate_keypair(
                        p.KeyType.RSA,
                        2048,
                        store=True,
                        label=label,
                        id=label.encode(),
                        private_template=private_template,
                    )
                    der = _spki_from_pkcs1(encode_rsa_public_key(public))
                else:
                    raise Pkcs11Error(f"unsupported algorithm {alg}")
            except p.PKCS11Error as exc:
                raise Pkcs11Error("key generation in the token failed", detail=repr(exc)) from exc
        key = load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise Pkcs11Error("the token returned an unexpected key type")
        return key

    def _find(self, label: str) -> Any:
        p = self._pkcs11
        found = list(
            self._session.get_objects(
                {p.Attribute.LABEL: label, p.Attribute.CLASS: p.ObjectClass.PRIVATE_KEY}
            )
        )
        return found[0] if found else None

    def is_extractable(self, label: str) -> bool:
        """For tests and audits: does the token say the private key may leave it?"""
        p = self._pkcs11
        with self._lock:
            key = self._find(label)
            if key is None:
                raise Pkcs11Error(f"no key labelled {label}")
            return bool(key[p.Attribute.EXTRACTABLE]) or not bool(key[p.Attribute.SENSITIVE])

    def destroy(self, label: str) -> None:
        p = self._pkcs11
        with self._lock:
            for obj in list(self._session.get_objects({p.Attribute.LABEL: label})):
                obj.destroy()

    def sign(self, label: str, alg: str, data: bytes) -> bytes:
        p = self._pkcs11
        with self._lock:
            key = self._find(label)
            if key is None:
                raise Pkcs11Error(f"no key labelled {label} in the token")
            try:
                if alg == "ES256":
                    return bytes(
                        key.sign(hashlib.sha256(data).digest(), mechanism=p.Mechanism.ECDSA)
                    )
                if alg == "PS256":
                    return bytes(
                        key.sign(
                            data,
                            mechanism=p.Mechanism.SHA256_RSA_PKCS_PSS,
                            mechanism_param=(
                                p.Mechanism.SHA256,
                                p.MGF.SHA256,
                                32,
                            ),
                        )
                    )
            except p.PKCS11Error as exc:
                raise Pkcs11Error("the token refused to sign", detail=repr(exc)) from exc
        raise Pkcs11Error(f"unsupported algorithm {alg}")

    def public_key(self, label: str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        p = self._pkcs11
        with self._lock:
            found = list(
                self._session.get_objects(
                    {p.Attribute.LABEL: label, p.Attribute.CLASS: p.ObjectClass.PUBLIC_KEY}
                )
            )
            if not found:
                raise Pkcs11Error(f"no public key labelled {label}")
            obj: Any = found[0]
            if obj.key_type == p.KeyType.EC:
                from pkcs11.util.ec import encode_ec_public_key

                der = encode_ec_public_key(obj)
            else:
                from pkcs11.util.rsa import encode_rsa_public_key

                der = _spki_from_pkcs1(encode_rsa_public_key(obj))
        key = load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise Pkcs11Error("unexpected key type")
        return key


def _spki_from_pkcs1(pkcs1_der: bytes) -> bytes:
    """Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7)."""
    from asn1crypto import keys as asn1_keys

    info = asn1_keys.PublicKeyInfo(
        {
            "algorithm": asn1_keys.PublicKeyAlgorithm({"algorithm": "rsa"}),
            "public_key": asn1_keys.RSAPublicKey.load(pkcs1_der),
        }
    )
    return bytes(info.dump())


class Pkcs11Signer:
    """A `Signer` whose private key stays in the token."""

    def __init__(self, token: Pkcs11Token, kid: str, alg: str, label: str) -> None:
        self.kid = kid
        self.alg = alg
        self._token = token
        self._label = label
        self._public = token.public_key(label)
        self._jwk = public_jwk_of(self._public, kid=kid, alg=alg)

    def sign(self, data: bytes) -> bytes:
        return self._token.sign(self._label, self.alg, data)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._jwk)

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return self._public
