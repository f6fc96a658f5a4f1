"""Trust anchors, the validation policy and certificate-path validation, all offline.

A verifier is given its trust anchors (root certificates, optionally intermediates and
CRLs) and the validation moment explicitly (EN 319 102-1 §5.2.6 "X.509 certificate
validation" takes both as inputs). Nothing here opens a network connection: a URL named
in the input (`jku`, `x5u`, a CRL distribution point, an AIA) is never fetched.

Path validation follows RFC 5280 §6.1 for this PKI's shape: the path is built from the
certificates the document carries plus configured intermediates, up to one of the
anchors by name *and* signature; CA certificates must be CAs with keyCertSign within
their path length; the leaf must fit its usage. Time and revocation are collected as
facts and judged by `conclude` together with the proof of existence (a timestamp) or the
claimed signing time, as EN 319 102-1 §5.3 and §5.5 do.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from keys.pki import DOCUMENT_SIGNING
from signing.report import Check, SubIndication

__all__ = [
    "DEFAULT_ALGORITHMS",
    "CrlIndex",
    "PathFacts",
    "RevocationFact",
    "TrustAnchors",
    "TrustContext",
    "ValidationPolicy",
    "check_revocation",
    "check_structure",
    "conclude",
    "validate_path",
    "x5t_s256",
]

T = TypeVar("T")

#: JWS algorithms a verifier accepts unless told otherwise (FAPI 2.0 §5.4, RFC 8725 §3.1).
DEFAULT_ALGORITHMS = frozenset({"ES256", "PS256"})
MAX_PATH = 4
_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.CERTIFICATE_POLICIES,
    }
)
_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


@dataclass(frozen=True)
class ValidationPolicy:
    """What a verifier accepts. The defaults are the province's policy."""

    algorithms: frozenset[str] = DEFAULT_ALGORITHMS
    #: without a current CRL for every certificate on the path the result is TRY_LATER
    require_revocation_info: bool = True
    max_jws_bytes: int = 256 * 1024
    max_pdf_bytes: int = 32 * 1024 * 1024
    max_batch: int = 1000


@dataclass(frozen=True)
class TrustAnchors:
    """Roots the verifier trusts, plus intermediates and CRLs it may use to build and check
    paths. Nothing else is trusted, whatever a document carries."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    _fingerprint: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        # Each role is tagged: a certificate trusted as a root and the same certificate
        # offered only as an intermediate are different anchors, and `TrustContext`
        # shares validation work between anchors with equal fingerprints.
        digest = hashlib.sha256()
        for role, items in (("root", self.roots), ("intermediate", self.intermediates)):
            for cert in items:
                digest.update(role.encode() + cert.fingerprint(hashes.SHA256()))
        for crl in self.crls:
            digest.update(b"crl" + crl.fingerprint(hashes.SHA256()))
        object.__setattr__(self, "_fingerprint", digest.hexdigest())

    @property
    def fingerprint(self) -> str:
        """SHA-256 over every root, intermediate and CRL, each with its role."""
        return self._fingerprint

    @classmethod
    def from_pem(
        cls,
        roots_pem: str | bytes,
        *,
        intermediates_pem: str | bytes = b"",
        crls: Iterable[bytes] = (),
    ) -> TrustAnchors:
        """From PEM certificates and DER (or PEM) CRLs, as published at `/api/v1/trust`."""

        def certs(data: str | bytes) -> tuple[x509.Certificate, ...]:
            raw = data.encode() if isinstance(data, str) else data
            return tuple(x509.load_pem_x509_certificates(raw)) if raw.strip() else ()

        loaded = []
        for item in crls:
            if item.lstrip().startswith(b"-----"):
                loaded.append(x509.load_pem_x509_crl(item))
            else:
                loaded.append(x509.load_der_x509_crl(item))
        return cls(certs(roots_pem), certs(intermediates_pem), tuple(loaded))

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any]) -> TrustAnchors:
        """From the JSON document served at `GET /api/v1/trust` (its `roots`,
        `intermediates` and `crls` members; CRLs as base64 DER)."""
        roots = "".join(str(r["pem"]) for r in bundle.get("roots", []))
        inter = "".join(str(r["pem"]) for r in bundle.get("intermediates", []))
        crls = [base64.b64decode(str(c["der_b64"])) for c in bundle.get("crls", [])]
        return cls.from_pem(roots, intermediates_pem=inter, crls=crls)


@dataclass(frozen=True)
class RevocationFact:
    """A certificate on the path found on a CRL."""

    index: int
    revoked_at: datetime
    reason: str
    on_hold: bool


@dataclass(frozen=True)
class PathFacts:
    """What path validation established, independent of any signing time."""

    chain: tuple[x509.Certificate, ...]
    checks: tuple[Check, ...]
    failure: SubIndication | None = None
    revocations: tuple[RevocationFact, ...] = ()
    #: indexes of certificates for which no current CRL was available
    unknown_status: tuple[int, ...] = ()


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def _build(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, ...] | None:
    """RFC 5280 §6 path building for a small hierarchy: issuer name match, then signature.
    A self-signed certificate in the pool is never an anchor; only `roots` are."""
    path = [leaf]
    current = leaf
    for _ in range(MAX_PATH):
        for root in roots:
            if current == root:
                return tuple(path)
            if current.issuer == root.subject and _issued_by(current, root):
                path.append(root)
                return tuple(path)
        candidates = [
            c
            for c in pool
            if c.subject == current.issuer and c not in path and not _is_self_issued(c)
        ]
        nxt = next((c for c in candidates if _issued_by(current, c)), None)
        if nxt is None:
            return None
        path.append(nxt)
        current = nxt
    return None


def _crypto_ok(cert: x509.Certificate) -> str | None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            return f"curve {key.curve.name} is not accepted"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return f"RSA key of {key.key_size} bits is too short"
    else:
        return "key type is not accepted"
    algo = cert.signature_hash_algorithm
    if not isinstance(algo, _HASHES):
        return "certificate signature hash is not accepted"
    return None


def _constraints(chain: Sequence[x509.Certificate], usage: str) -> str | None:
    """RFC 5280 §4.2 and §6.1.4 constraints for each certificate; None if all hold."""
    for index, cert in enumerate(chain):
        try:
            extensions = cert.extensions
        except ValueError as exc:
            return f"certificate {index} has a malformed extension ({exc})"
        for ext in extensions:
            if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
                return (
                    f"certificate {index} has an unknown critical extension {ext.oid.dotted_string}"
                )
        try:
            bc: x509.BasicConstraints | None = extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value
        except x509.ExtensionNotFound:
            bc = None
        try:
            ku: x509.KeyUsage | None = extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            ku = None
        if index == 0:
            if bc is not None and bc.ca:
                return "the signing certificate is a CA certificate"
            if ku is None or not (ku.digital_signature or ku.content_commitment):
                return "the signing certificate may not make signatures (keyUsage)"
            try:
                eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            except x509.ExtensionNotFound:
                eku = None
            if usage == "tsa":
                # RFC 3161 §2.3: the TSA certificate has exactly one EKU, timeStamping,
                # and the extension is critical.
                if (
                    eku is None
                    or not eku.critical
                    or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]
                ):
                    return "the timestamp certificate lacks a critical timeStamping EKU"
            elif eku is not None and not (
                set(eku.value)
                & {
                    DOCUMENT_SIGNING,
                    ExtendedKeyUsageOID.EMAIL_PROTECTION,
                    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
                }
            ):
                return "the seal certificate's extended key usage does not allow signing documents"
        else:
            if bc is None or not bc.ca:
                return f"certificate {index} signs others but is not a CA"
            # path length counts the intermediates below this CA (RFC 5280 §4.2.1.9)
            below = index - 1
            if bc.path_length is not None and below > bc.path_length:
                return f"certificate {index} exceeds its path length constraint"
            if ku is not None and not ku.key_cert_sign:
                return f"certificate {index} may not sign certificates (keyUsage)"
    return None


def _reason_name(entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return "unspecified"
    return reason.name


class CrlIndex:
    """CRLs by issuer, each accepted once its signature has been checked against the
    issuer certificate on the path."""

    def __init__(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        self._by_issuer: dict[x509.Name, list[tuple[x509.CertificateRevocationList, bytes]]] = {}
        for crl in crls:
            self._by_issuer.setdefault(crl.issuer, []).append(
                (crl, crl.fingerprint(hashes.SHA256()))
            )
        self._verified: dict[tuple[bytes, bytes], bool] = {}

    def current(
        self, issuer: x509.Certificate, moment: datetime
    ) -> x509.CertificateRevocationList | None:
        """The newest CRL from `issuer` that covers `moment` (its nextUpdate is not
        before it, or it was issued after it: RFC 5280 §6.3.3 (a))."""
        best: x509.CertificateRevocationList | None = None
        candidates = self._by_issuer.get(issuer.subject, [])
        issuer_fp = issuer.fingerprint(hashes.SHA256()) if candidates else b""
        for crl, crl_fp in candidates:
            key = (crl_fp, issuer_fp)
            if key not in self._verified:
                pub = issuer.public_key()
                ok = isinstance(
                    pub, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
                ) and crl.is_signature_valid(pub)
                self._verified[key] = ok
            if not self._verified[key]:
                continue
            next_update = crl.next_update_utc
            if crl.last_update_utc < moment and (next_update is None or next_update < moment):
                continue
            if best is None or crl.last_update_utc > best.last_update_utc:
                best = crl
        return best


def check_structure(
    leaf: x509.Certificate,
    supplied: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    *,
    usage: str = "seal",
) -> PathFacts:
    """The moment-independent half of `validate_path`: build the path to an anchor and
    check its algorithms and constraints (RFC 5280 §6.1). The result depends only on the
    certificates and the anchors, so it may be shared across validation moments."""
    checks: list[Check] = []
    chain = _build(leaf, [*supplied, *anchors.intermediates], anchors.roots)
    if chain is None:
        checks.append(
            Check("certificate_path", False, "no path from the certificate to a trusted root")
        )
        return PathFacts((leaf,), tuple(checks), SubIndication.NO_CERTIFICATE_CHAIN_FOUND)
    names = " → ".join(c.subject.rfc4514_string() for c in chain)
    checks.append(Check("certificate_path", True, names))
    for index, cert in enumerate(chain):
        problem = _crypto_ok(cert)
        if problem:
            checks.append(
                Check("cryptographic_constraints", False, f"certificate {index}: {problem}")
            )
            return PathFacts(chain, tuple(checks), SubIndication.CRYPTO_CONSTRAINTS_FAILURE)
    checks.append(Check("cryptographic_constraints", True, "keys and hashes accepted"))
    problem = _constraints(chain, usage)
    if problem:
        checks.append(Check("certificate_constraints", False, problem))
        return PathFacts(chain, tuple(checks), SubIndication.CHAIN_CONSTRAINTS_FAILURE)
    checks.append(Check("certificate_constraints", True, f"usage {usage}"))
    return PathFacts(chain, tuple(checks))


_CRLS_CURRENT = Check("revocation_information", True, "a current CRL for each certificate")


def check_revocation(structure: PathFacts, crls: CrlIndex, moment: datetime) -> PathFacts:
    """The moment-dependent half of `validate_path`: the revocation status of each
    certificate on a structurally valid path at `moment`, from the CRLs current then."""
    if structure.failure is not None:
        return structure
    chain = structure.chain
    revocations: list[RevocationFact] = []
    unknown: list[int] = []
    for position in range(len(chain) - 1):
        cert, issuer = chain[position], chain[position + 1]
        crl = crls.current(issuer, moment)
        if crl is None:
            unknown.append(position)
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            reason = _reason_name(entry)
            revocations.append(
                RevocationFact(
                    index=position,
                    revoked_at=entry.revocation_date_utc,
                    reason=reason,
                    on_hold=reason == "certificate_hold",
                )
            )
    if unknown:
        status = Check(
            "revocation_information",
            False,
            "no current CRL for certificate(s) " + ", ".join(str(i) for i in unknown),
        )
    else:
        status = _CRLS_CURRENT
    return PathFacts(chain, (*structure.checks, status), None, tuple(revocations), tuple(unknown))


def validate_path(
    leaf: x509.Certificate,
    supplied: Sequence[x509.Certificate],
    anchors: TrustAnchors,
    moment: datetime,
    *,
    usage: str = "seal",
    crl_index: CrlIndex | None = None,
) -> PathFacts:
    """Build and check the path from `leaf` to a trust anchor; collect revocation facts.

    Returns facts (never raises on bad certificates): a structural `failure`
    (NO_CERTIFICATE_CHAIN_FOUND, CHAIN_CONSTRAINTS_FAILURE, CRYPTO_CONSTRAINTS_FAILURE),
    or the chain with its revocation status at `moment`."""
    structure = check_structure(leaf, supplied, anchors, usage=usage)
    return check_revocation(structure, crl_index or CrlIndex(anchors.crls), moment)


class TrustContext:
    """Validation work that depends only on one set of trust anchors and the bytes a
    document carries, never on the validation moment: parsed certificates, built and
    checked paths, verified CRL signatures. Verifiers in one process share it.

    Sharing is safe because the key is the anchors' fingerprint, which covers every CRL:
    a revocation publishes a new CRL, so anchors that include it get a new context and
    nothing learnt before the revocation is reused. Revocation status and validity are
    judged again for every moment (`check_revocation`, `conclude`) from what is kept
    here. Thread-safe: entries are computed without a lock (a race only computes one
    twice) and the memo is bounded."""

    #: contexts kept per process, most recently used last (anchors change rarely: after
    #: each CRL publication, and a verifier of old anchors may still be running)
    _KEPT: ClassVar[int] = 8
    _contexts: ClassVar[OrderedDict[str, TrustContext]] = OrderedDict()
    _contexts_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, anchors: TrustAnchors, *, max_entries: int = 4096) -> None:
        self.anchors = anchors
        self.crls = CrlIndex(anchors.crls)
        self._max_entries = max_entries
        self._memo: dict[Hashable, Any] = {}
        self._windows: dict[Hashable, tuple[Any, datetime, datetime]] = {}

    @classmethod
    def of(cls, anchors: TrustAnchors) -> TrustContext:
        """The process's shared context for anchors with this fingerprint."""
        key = anchors.fingerprint
        with cls._contexts_lock:
            context = cls._contexts.get(key)
            if context is None:
                context = cls._contexts[key] = cls(anchors)
                while len(cls._contexts) > cls._KEPT:
                    cls._contexts.popitem(last=False)
            else:
                cls._contexts.move_to_end(key)
            return context

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()` once per `key`; callers put the exact input bytes in the key."""
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        value = compute()
        if len(self._memo) >= self._max_entries:
            self._memo.clear()  # rare: a flood of distinct chains, not worth an LRU
        self._memo[key] = value
        return value

    def until(
        self, key: Hashable, moment: datetime, compute: Callable[[], tuple[T, datetime | None]]
    ) -> T:
        """A moment-dependent value that `compute()` (called at `moment`) declares to hold
        unchanged for every later moment up to the datetime it returns with it (None: for
        this moment only). Kept only forwards: an earlier moment computes afresh."""
        entry = self._windows.get(key)
        if entry is not None and entry[1] <= moment <= entry[2]:
            return entry[0]  # type: ignore[no-any-return]
        value, last = compute()
        if last is not None and moment <= last:
            if len(self._windows) >= self._max_entries:
                self._windows.clear()
            self._windows[key] = (value, moment, last)
        return value


def conclude(
    facts: PathFacts,
    moment: datetime,
    *,
    poe: datetime | None,
    claimed: datetime | None,
    policy: ValidationPolicy,
) -> tuple[SubIndication | None, list[Check]]:
    """Judge time and revocation (EN 319 102-1 §5.3.4 and §5.5.4).

    `poe` is a proof of existence of the signature (a validated timestamp's time);
    `claimed` is the signer's own signing time. A signature proven (or claimed by the
    signer) to be made after revocation or outside the leaf's validity FAILS; revocation or
    expiry that nothing proves came after the signature leaves it INDETERMINATE."""
    checks: list[Check] = []
    if facts.failure is not None:
        return facts.failure, checks
    chain = facts.chain
    leaf = chain[0]
    signing_time = poe or claimed

    for rev in facts.revocations:
        what = "the seal certificate" if rev.index == 0 else f"CA certificate {rev.index}"
        if rev.on_hold:
            checks.append(Check("revocation_status", False, f"{what} is suspended (on hold)"))
            return SubIndication.TRY_LATER, checks
        if poe is not None and poe < rev.revoked_at:
            checks.append(
                Check(
                    "revocation_status",
                    True,
                    f"{what} was revoked at {rev.revoked_at.isoformat()}, after the "
                    f"timestamp {poe.isoformat()}",
                )
            )
            continue
        detail = f"{what} revoked at {rev.revoked_at.isoformat()} ({rev.reason})"
        checks.append(Check("revocation_status", False, detail))
        # A timestamp at or after the revocation proves misuse; the signer's own claim
        # must be strictly later (claimed times have a resolution of one second).
        if (poe is not None and poe >= rev.revoked_at) or (
            poe is None and claimed is not None and claimed > rev.revoked_at
        ):
            return SubIndication.REVOKED, checks
        if rev.index == 0:
            return SubIndication.REVOKED_NO_POE, checks
        return SubIndication.REVOKED_CA_NO_POE, checks
    if not facts.revocations and not facts.unknown_status:
        checks.append(Check("revocation_status", True, "not revoked"))

    if signing_time is not None:
        source = "timestamp" if poe is not None else "claimed signing time"
        if signing_time < leaf.not_valid_before_utc:
            checks.append(Check("signing_time_in_validity", False, f"{source} is before notBefore"))
            return SubIndication.NOT_YET_VALID, checks
        if signing_time > leaf.not_valid_after_utc:
            checks.append(Check("signing_time_in_validity", False, f"{source} is after notAfter"))
            return SubIndication.EXPIRED, checks
        checks.append(
            Check("signing_time_in_validity", True, f"{source} within the seal's validity")
        )

    for index, cert in enumerate(chain):
        before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
        if before <= moment <= after:
            continue
        if poe is not None and before <= poe <= after:
            checks.append(
                Check(
                    "validity_at_validation_time",
                    True,
                    f"certificate {index} is outside its validity now, but the timestamp "
                    "proves the seal was made while it was valid",
                )
            )
            continue
        checks.append(
            Check(
                "validity_at_validation_time",
                False,
                f"certificate {index} is not valid at {moment.isoformat()}",
            )
        )
        return SubIndication.OUT_OF_BOUNDS_NO_POE, checks
    checks.append(Check("validity_at_validation_time", True, "every certificate valid"))

    if facts.unknown_status and policy.require_revocation_info:
        return SubIndication.TRY_LATER, checks
    return None, checks


def x5t_s256(cert: x509.Certificate) -> str:
    """The `x5t#S256` thumbprint (RFC 7515 §4.1.8) used as a seal certificate's `kid`."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
