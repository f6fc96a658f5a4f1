"""Sealed JSON: a compact JWS (RFC 7515 §7.1) over the RFC 8785 canonical form of the
document, signed by a seal.

Protected header (all of it signed):

- `alg`: ES256 (default) or PS256 (RFC 7518 §3.4, §3.5);
- `typ`: `tongban-seal+jws`, explicit so a sealed document is never taken for another
  kind of token (RFC 8725 §3.11);
- `kid`: the `x5t#S256` thumbprint of the seal certificate (RFC 7515 §4.1.8);
- `x5c`: the seal certificate and the issuing CA, not the root (RFC 7515 §4.1.6: each
  certificate after the first certifies the one before and all are optional; a verifier
  takes the root from its trust anchors and would never trust one carried in the token);
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
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

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
    PathFacts,
    TrustAnchors,
    TrustContext,
    ValidationPolicy,
    check_revocation,
    check_structure,
    conclude,
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
_ES256 = ec.ECDSA(hashes.SHA256())
_SHA256 = hashes.SHA256()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_CLEAN_CHECKS = (
    Check("revocation_status", True, "not revoked"),
    Check("signing_time_in_validity", True, "claimed signing time within the seal's validity"),
    Check("validity_at_validation_time", True, "every certificate valid"),
)


def _sig_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _x5c(sealer: SealSigner) -> list[str]:
    """The chain without its self-signed root: verifiers take the root from their trust
    anchors, and every verification decodes and hashes what the header carries."""
    certs = list(sealer.chain.certificates)
    if len(certs) > 1 and certs[-1].subject == certs[-1].issuer:
        certs.pop()
    return [base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in certs]


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
        "x5c": _x5c(sealer),
        "sigT": _sig_time(now),
    }
    signing_input = f"{b64url(canonical_json(header))}.{b64url(payload)}"
    signature = sealer.signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


class _Malformed(Exception):
    """Internal: the token is not well-formed (→ FAILED/FORMAT_FAILURE)."""


# The URL-safe alphabet to the standard one; `+`, `/` and `=` (not base64url, and no
# padding in JWS) become `*`, which the strict decoder refuses like any other stranger.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
_PADDING = (b"", b"", b"==", b"=")


def _b64url_decode(part: str, what: str) -> bytes:
    """Strict base64url (RFC 7515 §2): only the URL-safe alphabet, no padding."""
    if len(part) % 4 == 1:
        raise _Malformed(f"{what} is not base64url")
    try:
        raw = part.encode("ascii").translate(_TO_STANDARD) + _PADDING[len(part) % 4]
        return binascii.a2b_base64(raw, strict_mode=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise _Malformed(f"{what} is not base64url") from exc


#: Where a header splits into a head decoded for every token and a tail kept decoded:
#: the headers one seal writes differ only in `sigT`, within their first 100 bytes, and
#: base64url decodes in independent groups of four characters (three bytes).
_HEADER_SPLIT = 192
_HEAD_BYTES = _HEADER_SPLIT // 4 * 3
_MAX_TAILS = 256


@dataclass(frozen=True)
class _HeaderTail:
    """What the base64url tail of a header seen before holds: the end of its members
    before `x5c` and all of its `x5c` member, which ends the header."""

    #: the tail itself (the memo is keyed by its length and last characters)
    text: str
    #: the decoded tail's bytes before the `x5c` member
    before: bytes
    #: the first bytes of `,"x5c":[…]}` that lie in the head (the member may start there)
    in_head: bytes
    x5c: list[str]


_TAILS: dict[tuple[int, str], _HeaderTail] = {}


def _tail_key(token: str, end: int) -> tuple[int, str]:
    # Cheap to make; `_HeaderTail.text` is compared in full before a tail is used.
    return end, token[end - 32 : end]


def _parse_header(token: str, end: int) -> dict[str, Any]:
    """The protected header, `token[:end]`, as a JSON object (RFC 7515 §4), strictly
    parsed.

    A header whose base64url tail has been seen before is decoded only up to the split,
    and only its members before `x5c` are parsed: if those bytes plus `}` are a non-empty
    JSON object without `x5c`, the header is exactly that object plus the known `x5c`
    member (the `}` must close the top-level object, so the `,` of the member follows a
    complete value at the top level). Anything else takes the full parse."""
    long = end > _HEADER_SPLIT + 32
    if long:
        tail = _TAILS.get(_tail_key(token, end))
        if (
            tail is not None
            and end - _HEADER_SPLIT == len(tail.text)
            and token.startswith(tail.text, _HEADER_SPLIT)
        ):
            head = _b64url_decode(token[:_HEADER_SPLIT], "the header")
            if head.endswith(tail.in_head):
                try:
                    members = loads_strict(
                        head[: len(head) - len(tail.in_head)] + tail.before + b"}"
                    )
                except (CanonicalisationError, UnicodeDecodeError):
                    members = None
                if isinstance(members, dict) and members and "x5c" not in members:
                    members["x5c"] = tail.x5c
                    return members
    data = _b64url_decode(token[:end], "the header")
    try:
        header = loads_strict(data)
    except CanonicalisationError as exc:
        raise _Malformed(f"the header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise _Malformed("the header is not a JSON object")
    x5c = header.get("x5c")
    if long and isinstance(x5c, list) and all(isinstance(c, str) for c in x5c):
        member = b',"x5c":' + json.dumps(x5c, separators=(",", ":")).encode("ascii") + b"}"
        start = len(data) - len(member)  # where the member starts if it ends the header
        if data.endswith(member) and start >= 0:
            if len(_TAILS) >= _MAX_TAILS:
                _TAILS.clear()
            _TAILS[_tail_key(token, end)] = _HeaderTail(
                text=token[_HEADER_SPLIT:end],
                before=data[_HEAD_BYTES:start],
                in_head=member[: max(0, _HEAD_BYTES - start)],
                x5c=list(x5c),
            )
    return header


@dataclass(frozen=True)
class _SealCertificate:
    """What one exact `x5c` establishes against the trust anchors at any moment: the seal
    certificate, its key and identity, and the checked path (shared through the
    `TrustContext`, so across verifiers and requests)."""

    cert: x509.Certificate
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None
    #: the JWS algorithms (RFC 7518 §3.4, §3.5) this key can verify
    key_algorithms: frozenset[str]
    kid: str
    structure: PathFacts
    identity: SealIdentity
    path: tuple[CertificateSummary, ...]
    subject_check: Check
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class _Leaf:
    """A seal certificate with its revocation and validity facts at a moment."""

    seal: _SealCertificate
    facts: PathFacts
    #: the path holds no revocation and every certificate is valid at the moment: then
    #: `conclude` only has to place the claimed signing time in the leaf's validity
    clean: bool
    #: the checks of a clean PASSED report by (alg, typ): the same tuple for every token,
    #: which a renderer can recognise (`signing.report.ReportEncoder`)
    passed_checks: dict[tuple[str, str], tuple[Check, ...]] = field(
        default_factory=dict, compare=False
    )
    #: a PASSED report per validation moment, for `VerificationReport.passed_again`
    passed_template: dict[datetime, VerificationReport] = field(default_factory=dict, compare=False)


def _der_signature(signature: bytes) -> bytes:
    """A JWS ES256 signature, R || S (RFC 7518 §3.4), as the DER `Ecdsa-Sig-Value` that
    OpenSSL verifies (RFC 3279 §2.2.3): what `encode_dss_signature` writes, without
    converting to integers and back."""
    r = signature[:32].lstrip(b"\0") or b"\0"
    s = signature[32:].lstrip(b"\0") or b"\0"
    if r[0] & 0x80:  # INTEGER is signed: keep it positive
        r = b"\0" + r
    if s[0] & 0x80:
        s = b"\0" + s
    return bytes((0x30, len(r) + len(s) + 4, 0x02, len(r))) + r + bytes((0x02, len(s))) + s


def _key_algorithms(key: object) -> frozenset[str]:
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return frozenset({"ES256"})
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return frozenset({"PS256"})
    return frozenset()


def _seal_certificate(
    x5c: tuple[str, ...], anchors: TrustAnchors
) -> _SealCertificate | SubIndication:
    try:
        certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
    except (ValueError, binascii.Error):
        return SubIndication.FORMAT_FAILURE
    leaf = certs[0]
    public = leaf.public_key()
    structure = check_structure(leaf, certs[1:], anchors, usage="seal")
    return _SealCertificate(
        cert=leaf,
        public_key=public
        if isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        else None,
        kid=x5t_s256(leaf),
        structure=structure,
        identity=seal_identity(leaf),
        path=tuple(summarise_certificate(c) for c in structure.chain),
        key_algorithms=_key_algorithms(public),
        subject_check=Check("signing_certificate", True, leaf.subject.rfc4514_string()),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )


def _leaf_at(
    seal: _SealCertificate, context: TrustContext, moment: datetime
) -> tuple[_Leaf, datetime | None]:
    """The leaf's facts at `moment`, and until when a clean result stays exactly the same
    (None: recompute it for every verifier)."""
    facts = check_revocation(seal.structure, context.crls, moment)
    chain = facts.chain
    clean = (
        facts.failure is None
        and not facts.revocations
        and not facts.unknown_status
        and all(c.not_valid_before_utc <= moment <= c.not_valid_after_utc for c in chain)
    )
    leaf = _Leaf(seal, facts, clean)
    if not clean:
        return leaf, None
    # Later moments see the same facts until a certificate expires or a CRL used here
    # passes its nextUpdate (another CRL may be current then, or none): until then the
    # CRL chosen stays the newest acceptable one, as acceptance only narrows with time.
    until = min(c.not_valid_after_utc for c in chain)
    for position in range(len(chain) - 1):
        crl = context.crls.current(chain[position + 1], moment)
        if crl is None:  # cannot happen for a clean path; never keep what is not proven
            return leaf, None
        # A CRL without nextUpdate is acceptable only up to its thisUpdate.
        crl_until = crl.next_update_utc or crl.last_update_utc
        until = min(until, crl_until)
    return leaf, until


class JwsVerifier:
    """Verifies sealed JWS against fixed trust anchors at a fixed moment.

    Reuse one verifier for a batch: the certificate path of each distinct `x5c` is
    validated once, so a batch costs about one signature check per token. Work that does
    not depend on the moment (parsing `x5c`, building and checking the path, CRL
    signatures) is shared with every other verifier of the same anchors in the process
    through `TrustContext.of(anchors)`; revocation and validity are judged at this
    verifier's moment."""

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
        self._context = TrustContext.of(anchors)
        self._type_ok = Check("type", True, typ)
        self._typs = (typ, f"application/{typ}")
        self._leaves: dict[tuple[str, ...], _Leaf | SubIndication] = {}

    # -- the steps ------------------------------------------------------------------

    def _leaf(self, x5c: list[str]) -> _Leaf | SubIndication:
        key = tuple(x5c)
        cached = self._leaves.get(key)
        if cached is not None:
            return cached
        context = self._context
        seal = context.memo(("jws-x5c", key), lambda: _seal_certificate(key, self.anchors))
        result: _Leaf | SubIndication
        if isinstance(seal, SubIndication):
            result = seal
        else:
            result = context.until(
                ("jws-leaf", key), self.moment, lambda: _leaf_at(seal, context, self.moment)
            )
        if len(self._leaves) < 4096:
            self._leaves[key] = result
        return result

    @staticmethod
    def _signature_ok(
        alg: str,
        seal: _SealCertificate,
        signing_input: bytes | memoryview,
        signature: bytes,
    ) -> str | None:
        """RFC 7518 §3.4/§3.5 signature check; returns a reason when it fails."""
        key = seal.public_key
        try:
            if alg == "ES256":
                if not isinstance(key, ec.EllipticCurvePublicKey) or alg not in seal.key_algorithms:
                    return "ES256 needs a P-256 key"
                if len(signature) != 64:
                    return "an ES256 signature is 64 bytes"
                key.verify(_der_signature(signature), signing_input, _ES256)
                return None
            if alg == "PS256":
                if not isinstance(key, rsa.RSAPublicKey) or alg not in seal.key_algorithms:
                    return "PS256 needs an RSA key of at least 2048 bits"
                key.verify(signature, bytes(signing_input), _PSS, _SHA256)
                return None
        except InvalidSignature:
            return "the signature does not verify with the seal certificate's key"
        return f"algorithm {alg} is not supported"

    def _report(
        self,
        sub: SubIndication | None,
        checks: list[Check] | tuple[Check, ...],
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
            seal=leaf.seal.identity if leaf else None,
            signing_time=signing_time,
            signing_time_source="claimed" if signing_time else None,
            certificate_path=leaf.seal.path if leaf else (),
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
        # Positions, not `split`: the header is 2-3 KB and is sliced only where needed.
        first = token.find(".")
        second = token.find(".", first + 1) if first >= 0 else -1
        if second < 0 or token.find(".", second + 1) >= 0:
            raise _Malformed("a compact JWS has three parts (RFC 7515 §7.1)")
        header = _parse_header(token, first)
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
        if str(header.get("typ", "")).lower() not in self._typs:
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
        seal = leaf.seal
        checks.append(seal.subject_check)
        kid = header.get("kid")
        if kid is not None and kid != seal.kid:
            checks.append(Check("key_identifier", False, "kid is not the x5t#S256 of x5c[0]"))
            return self._report(SubIndication.FORMAT_FAILURE, checks, leaf)

        claimed: datetime | None = None
        if "sigT" in header:
            sig_t = header["sigT"]
            if not isinstance(sig_t, str) or not _SIG_T.match(sig_t):
                raise _Malformed("sigT is not a UTC time (TS 119 182-1 §5.2.1)")
            claimed = datetime.fromisoformat(sig_t[:-1] + "+00:00")

        signature = _b64url_decode(token[second + 1 :], "the signature")
        payload_b64 = token[first + 1 : second]
        # a view, not a copy; a non-ASCII payload raises here (→ FORMAT_FAILURE)
        signing_input = memoryview(token.encode("ascii"))[:second]
        problem = self._signature_ok(alg, seal, signing_input, signature)
        if problem:
            checks.append(Check("signature", False, problem))
            return self._report(SubIndication.SIG_CRYPTO_FAILURE, checks, leaf, claimed)
        checks.append(_SIGNATURE_OK[alg])

        payload = _b64url_decode(payload_b64, "the payload")
        try:
            document = parse_canonical(payload)
        except (CanonicalisationError, UnicodeDecodeError):
            checks.append(Check("canonical_payload", False, "not RFC 8785 canonical JSON"))
            return self._report(SubIndication.FORMAT_FAILURE, checks, leaf, claimed)
        checks.append(_CANONICAL_OK)

        if leaf.clean and claimed is not None and seal.not_before <= claimed <= seal.not_after:
            # the common case, decided exactly as `conclude` would, without its work
            if ignored or alg not in _ALG_OK:
                checks.extend(leaf.facts.checks)
                checks.extend(_CLEAN_CHECKS)
                return self._report(None, checks, leaf, claimed, document)
            passed = leaf.passed_checks.get((alg, self.typ))
            if passed is None:
                passed = (*checks, *leaf.facts.checks, *_CLEAN_CHECKS)
                leaf.passed_checks[alg, self.typ] = passed
            template = leaf.passed_template.get(self.moment)
            if template is None:
                template = VerificationReport(
                    format="jws",
                    indication=Indication.PASSED,
                    sub_indication=None,
                    validation_time=self.moment,
                    checks=passed,
                    seal=seal.identity,
                    signing_time=claimed,
                    signing_time_source="claimed",
                    certificate_path=seal.path,
                )
                if len(leaf.passed_template) > 64:
                    leaf.passed_template.clear()
                leaf.passed_template[self.moment] = template
            return template.passed_again(claimed, passed, document, payload)
        checks.extend(leaf.facts.checks)
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
