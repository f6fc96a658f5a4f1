"""Sealed JSON: a compact JWS (RFC 7515 §7.1) over the RFC 8785 canonical form of the
document, signed by a seal.

Protected header (all of it signed):

- `alg`: ES256 (default) or PS256 (RFC 7518 §3.4, §3.5);
- `typ`: `tongban-seal+jws`, explicit so a sealed document is never taken for another
  kind of token (RFC 8725 §3.11);
- `kid`: the `x5t#S256` thumbprint of the seal certificate (RFC 7515 §4.1.8);
- `x5c`: the seal certificate, the issuing CA and the root (RFC 7515 §4.1.6);
- `sigT`: the claimed signing time (ETSI TS 119 182-1 §5.2.1, JAdES) — the signer's word,
  not a proof of existence.

Any JOSE library verifies it with the seal certificate's key; `verify` here also
validates the certificate path offline against explicit trust anchors, fixes the
algorithms itself (RFC 8725 §3.1), refuses `alg: none`, unknown `crit` members and a wrong
`typ`, and ignores `jku`, `x5u` and `jwk` (never fetched, never trusted; RFC 8725 §3.10).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kit.canonical import CanonicalisationError, canonical_json, loads_strict, parse_canonical
from kit.ids import b64url
from signing.errors import InputTooLarge
from signing.report import (
    CertificateSummary,
    Check,
    Indication,
    SealIdentity,
    SubIndication,
    VerificationReport,
    seal_identity,
    summarise_certificate,
)
from signing.seals import SealSigner
from signing.trust import (
    CrlIndex,
    PathFacts,
    TrustAnchors,
    ValidationPolicy,
    conclude,
    validate_path,
    x5t_s256,
)

__all__ = ["SEAL_TYP", "JwsVerifier", "seal", "verify", "verify_batch"]

SEAL_TYP = "tongban-seal+jws"
#: the largest document `seal` accepts (its JWS grows by a third in base64url)
MAX_DOCUMENT_BYTES = 160 * 1024
_IGNORED_HEADERS = ("jku", "x5u", "jwk")
_MAX_X5C = 5
_SIG_T = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# Checks that passed are the same objects every time: a batch builds none of them.
_FORMAT_OK = Check("format", True, "compact serialisation, JSON header")
_ALG_OK = {alg: Check("algorithm", True, alg) for alg in ("ES256", "PS256")}
_SIGNATURE_OK = {
    alg: Check("signature", True, f"{alg} with the seal certificate's key")
    for alg in ("ES256", "PS256")
}
_CANONICAL_OK = Check("canonical_payload", True, "RFC 8785")
_CLEAN_CHECKS = (
    Check("revocation_status", True, "not revoked"),
    Check("signing_time_in_validity", True, "claimed signing time within the seal's validity"),
    Check("validity_at_validation_time", True, "every certificate valid"),
)


def _sig_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seal(document: Any, sealer: SealSigner, *, now: datetime, typ: str = SEAL_TYP) -> str:
    """Seal a JSON document (any I-JSON value) with an open seal; return the compact JWS."""
    if sealer.signer.alg not in ("ES256", "PS256"):
        raise ValueError(f"seals sign with ES256 or PS256, not {sealer.signer.alg}")
    payload = canonical_json(document)
    if len(payload) > MAX_DOCUMENT_BYTES:
        raise InputTooLarge(f"a sealed JSON document is at most {MAX_DOCUMENT_BYTES} bytes")
    header = {
        "alg": sealer.signer.alg,
        "typ": typ,
        "kid": sealer.kid,
        "x5c": [base64.b64encode(der).decode("ascii") for der in sealer.chain.der()],
        "sigT": _sig_time(now),
    }
    signing_input = f"{b64url(canonical_json(header))}.{b64url(payload)}"
    signature = sealer.signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


class _Malformed(Exception):
    """Internal: the token is not well-formed (→ FAILED/FORMAT_FAILURE)."""


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def _b64url_decode(part: str, what: str) -> bytes:
    """Strict base64url (RFC 7515 §2): only the URL-safe alphabet, no padding."""
    if len(part) % 4 == 1 or "=" in part or "+" in part or "/" in part:
        raise _Malformed(f"{what} is not base64url")
    try:
        raw = part.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(part) % 4)
        return binascii.a2b_base64(raw, strict_mode=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise _Malformed(f"{what} is not base64url") from exc


@dataclass(frozen=True)
class _Leaf:
    """A seal certificate and what its path validation established (cached per x5c)."""

    cert: x509.Certificate
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None
    kid: str
    facts: PathFacts
    identity: SealIdentity
    path: tuple[CertificateSummary, ...]
    subject_check: Check
    #: the path holds no revocation and every certificate is valid at the moment: then
    #: `conclude` only has to place the claimed signing time in the leaf's validity
    clean: bool
    not_before: datetime
    not_after: datetime


class JwsVerifier:
    """Verifies sealed JWS against fixed trust anchors at a fixed moment.

    Reuse one verifier for a batch: the certificate path of each distinct `x5c` is
    validated once, so a batch costs about one signature check per token."""

    def __init__(
        self,
        anchors: TrustAnchors,
        moment: datetime,
        *,
        policy: ValidationPolicy | None = None,
        typ: str = SEAL_TYP,
    ) -> None:
        if moment.tzinfo is None:
            raise ValueError("the validation moment must be timezone-aware")
        self.anchors = anchors
        self.moment = moment
        self.policy = policy or ValidationPolicy()
        self.typ = typ
        self._crls = CrlIndex(anchors.crls)
        self._type_ok = Check("type", True, typ)
        self._leaves: dict[tuple[str, ...], _Leaf | SubIndication] = {}

    # -- the steps ------------------------------------------------------------------

    def _leaf(self, x5c: Sequence[str]) -> _Leaf | SubIndication:
        key = tuple(x5c)
        cached = self._leaves.get(key)
        if cached is not None:
            return cached
        try:
            certs = [
                x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c
            ]
        except (ValueError, binascii.Error):
            result: _Leaf | SubIndication = SubIndication.FORMAT_FAILURE
        else:
            leaf = certs[0]
            public = leaf.public_key()
            facts = validate_path(
                leaf, certs[1:], self.anchors, self.moment, usage="seal", crl_index=self._crls
            )
            result = _Leaf(
                cert=leaf,
                public_key=public
                if isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
                else None,
                kid=x5t_s256(leaf),
                facts=facts,
                identity=seal_identity(leaf),
                path=tuple(summarise_certificate(c) for c in facts.chain),
                subject_check=Check("signing_certificate", True, leaf.subject.rfc4514_string()),
                clean=facts.failure is None
                and not facts.revocations
                and not facts.unknown_status
                and all(
                    c.not_valid_before_utc <= self.moment <= c.not_valid_after_utc
                    for c in facts.chain
                ),
                not_before=leaf.not_valid_before_utc,
                not_after=leaf.not_valid_after_utc,
            )
        if len(self._leaves) < 4096:
            self._leaves[key] = result
        return result

    @staticmethod
    def _signature_ok(
        alg: str,
        key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None,
        signing_input: bytes,
        signature: bytes,
    ) -> str | None:
        """RFC 7518 §3.4/§3.5 signature check; returns a reason when it fails."""
        try:
            if alg == "ES256":
                if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                    return "ES256 needs a P-256 key"
                if len(signature) != 64:
                    return "an ES256 signature is 64 bytes"
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
                return None
            if alg == "PS256":
                if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
                    return "PS256 needs an RSA key of at least 2048 bits"
                key.verify(
                    signature,
                    signing_input,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                    hashes.SHA256(),
                )
                return None
        except InvalidSignature:
            return "the signature does not verify with the seal certificate's key"
        return f"algorithm {alg} is not supported"

    def _report(
        self,
        sub: SubIndication | None,
        checks: list[Check],
        leaf: _Leaf | None = None,
        signing_time: datetime | None = None,
        document: Any = None,
    ) -> VerificationReport:
        return VerificationReport(
            format="jws",
            indication=sub.indication if sub else Indication.PASSED,
            sub_indication=sub,
            validation_time=self.moment,
            checks=tuple(checks),
            seal=leaf.identity if leaf else None,
            signing_time=signing_time,
            signing_time_source="claimed" if signing_time else None,
            certificate_path=leaf.path if leaf else (),
            document=document if sub is None else None,
        )

    def verify(self, token: object) -> VerificationReport:
        """Verify one compact JWS. Never raises: bad input gives a FAILED report."""
        checks: list[Check] = []
        try:
            return self._verify(token, checks)
        except _Malformed as exc:
            checks.append(Check("format", False, str(exc)))
        except (
            ValueError,
            TypeError,
            KeyError,
            UnicodeError,
            RecursionError,
            OverflowError,
        ) as exc:
            checks.append(Check("format", False, f"unreadable input ({type(exc).__name__})"))
        return self._report(SubIndication.FORMAT_FAILURE, checks)

    def _verify(self, token: object, checks: list[Check]) -> VerificationReport:
        if isinstance(token, bytes):
            token = token.decode("ascii")
        if not isinstance(token, str):
            raise _Malformed("a compact JWS is a string")
        token = token.strip()
        if len(token) > self.policy.max_jws_bytes:
            raise _Malformed(f"longer than {self.policy.max_jws_bytes} bytes")
        parts = token.split(".")
        if len(parts) != 3:
            raise _Malformed("a compact JWS has three parts (RFC 7515 §7.1)")
        header_b64, payload_b64, signature_b64 = parts
        try:
            header = loads_strict(_b64url_decode(header_b64, "the header"))
        except CanonicalisationError as exc:
            raise _Malformed(f"the header is not JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise _Malformed("the header is not a JSON object")
        checks.append(_FORMAT_OK)

        # RFC 8725 §3.1: the verifier's own allowlist decides, never the header.
        alg = header.get("alg")
        if alg == "none" or alg is None:
            checks.append(Check("algorithm", False, "unsigned (alg none or missing)"))
            return self._report(SubIndication.FORMAT_FAILURE, checks)
        if alg not in self.policy.algorithms:
            checks.append(Check("algorithm", False, f"{str(alg)[:20]!r} is not accepted"))
            return self._report(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, checks)
        checks.append(_ALG_OK[alg] if alg in _ALG_OK else Check("algorithm", True, str(alg)))
        if "crit" in header:
            # RFC 7515 §4.1.11: we understand no extension, so any crit is fatal.
            checks.append(Check("critical_headers", False, "unsupported crit extension"))
            return self._report(SubIndication.FORMAT_FAILURE, checks)
        if str(header.get("typ", "")).lower() not in (self.typ, f"application/{self.typ}"):
            checks.append(Check("type", False, f"typ is not {self.typ}"))
            return self._report(SubIndication.FORMAT_FAILURE, checks)
        checks.append(self._type_ok)
        ignored = [name for name in _IGNORED_HEADERS if name in header]
        if ignored:
            checks.append(
                Check("ignored_headers", True, f"{', '.join(ignored)} ignored, never fetched")
            )

        x5c = header.get("x5c")
        if x5c is None:
            checks.append(Check("signing_certificate", False, "no x5c header"))
            return self._report(SubIndication.NO_SIGNING_CERTIFICATE_FOUND, checks)
        if (
            not isinstance(x5c, list)
            or not x5c
            or len(x5c) > _MAX_X5C
            or not all(isinstance(c, str) for c in x5c)
        ):
            raise _Malformed("x5c is not a list of base64 certificates")
        leaf = self._leaf(x5c)
        if isinstance(leaf, SubIndication):
            checks.append(Check("signing_certificate", False, "x5c does not hold certificates"))
            return self._report(leaf, checks)
        checks.append(leaf.subject_check)
        kid = header.get("kid")
        if kid is not None and kid != leaf.kid:
            checks.append(Check("key_identifier", False, "kid is not the x5t#S256 of x5c[0]"))
            return self._report(SubIndication.FORMAT_FAILURE, checks, leaf)

        claimed: datetime | None = None
        if "sigT" in header:
            sig_t = header["sigT"]
            if not isinstance(sig_t, str) or not _SIG_T.match(sig_t):
                raise _Malformed("sigT is not a UTC time (TS 119 182-1 §5.2.1)")
            claimed = datetime.fromisoformat(sig_t[:-1]).replace(tzinfo=UTC)

        signature = _b64url_decode(signature_b64, "the signature")
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        problem = self._signature_ok(alg, leaf.public_key, signing_input, signature)
        if problem:
            checks.append(Check("signature", False, problem))
            return self._report(SubIndication.SIG_CRYPTO_FAILURE, checks, leaf, claimed)
        checks.append(_SIGNATURE_OK[alg])

        payload = _b64url_decode(payload_b64, "the payload")
        try:
            document = parse_canonical(payload)
        except (CanonicalisationError, UnicodeDecodeError):
            document, canonical = None, False
        else:
            canonical = True
        if not canonical:
            checks.append(Check("canonical_payload", False, "not RFC 8785 canonical JSON"))
            return self._report(SubIndication.FORMAT_FAILURE, checks, leaf, claimed)
        checks.append(_CANONICAL_OK)

        checks.extend(leaf.facts.checks)
        if leaf.clean and claimed is not None and leaf.not_before <= claimed <= leaf.not_after:
            # the common case, decided exactly as `conclude` would, without its work
            checks.extend(_CLEAN_CHECKS)
            return self._report(None, checks, leaf, claimed, document)
        sub, more = conclude(leaf.facts, self.moment, poe=None, claimed=claimed, policy=self.policy)
        checks.extend(more)
        return self._report(sub, checks, leaf, claimed, document)

    def verify_many(self, tokens: Iterable[object]) -> list[VerificationReport]:
        return [self.verify(token) for token in tokens]


def verify(
    token: object,
    anchors: TrustAnchors,
    moment: datetime,
    *,
    policy: ValidationPolicy | None = None,
) -> VerificationReport:
    """Verify one sealed JWS offline against `anchors` at `moment`."""
    return JwsVerifier(anchors, moment, policy=policy).verify(token)


def verify_batch(
    tokens: Sequence[object],
    anchors: TrustAnchors,
    moment: datetime,
    *,
    policy: ValidationPolicy | None = None,
) -> list[VerificationReport]:
    """Verify many sealed JWS with one verifier (paths validated once per seal)."""
    verifier = JwsVerifier(anchors, moment, policy=policy)
    if len(tokens) > verifier.policy.max_batch:
        raise InputTooLarge(f"at most {verifier.policy.max_batch} documents per batch")
    return verifier.verify_many(tokens)
