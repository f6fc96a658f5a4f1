"""The `Signer` protocol: where a private key lives (memory, HSM) is invisible to callers.

`sign` returns a JWS-ready signature (RFC 7518 §3.4: ECDSA as fixed-size R||S).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keys.errors import KeysError
from kit.ids import b64url

SUPPORTED_ALGS = ("ES256", "RS256", "PS256")


@runtime_checkable
class Signer(Protocol):
    kid: str
    alg: str

    def sign(self, data: bytes) -> bytes: ...

    def public_jwk(self) -> dict[str, Any]: ...


def generate_private_key(alg: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise KeysError(f"unsupported algorithm {alg}")


def public_jwk_of(
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, *, kid: str, alg: str
) -> dict[str, Any]:
    """RFC 7517 public JWK; private members can never appear."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        nums = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(nums.x.to_bytes(32, "big")),
            "y": b64url(nums.y.to_bytes(32, "big")),
            "kid": kid,
            "alg": alg,
            "use": "sig",
        }
    rnums = key.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url(rnums.n.to_bytes((rnums.n.bit_length() + 7) // 8, "big")),
        "e": b64url(rnums.e.to_bytes((rnums.e.bit_length() + 7) // 8, "big")),
        "kid": kid,
        "alg": alg,
        "use": "sig",
    }


class SoftwareSigner:
    """A key held in process memory, unwrapped from its KEK-wrapped form at load."""

    def __init__(
        self, kid: str, alg: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ) -> None:
        if alg not in SUPPORTED_ALGS:
            raise KeysError(f"unsupported algorithm {alg}")
        self.kid = kid
        self.alg = alg
        self._key = key
        self._jwk = public_jwk_of(key.public_key(), kid=kid, alg=alg)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            der = self._key.sign(data, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "PS256":
            return self._key.sign(
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._jwk)

    @classmethod
    def from_pem(cls, kid: str, alg: str, pem: bytes) -> SoftwareSigner:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeysError("unsupported key type")
        return cls(kid, alg, key)


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
