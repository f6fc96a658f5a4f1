"""The provincial PKI: a root CA, an issuing CA under it, one certificate per electronic
seal and a timestamp-authority certificate, built with `cryptography`'s X.509 builders.

Profile (RFC 5280):

- root: basicConstraints cA, pathLen 1 (§4.2.1.9); keyUsage keyCertSign + cRLSign only
  (§4.2.1.3); SKI. Its key can be exported wrapped and removed, after which the service
  runs on the issuing CA alone (`export_root`/`import_root`).
- issuing CA: cA, pathLen 0; keyCertSign + cRLSign; SKI, AKI (§4.2.1.1-2); CRL
  distribution point `{issuer}/pki/crl/root.crl` (§4.2.1.13).
- seal: not a CA; digitalSignature + contentCommitment (non-repudiation); EKU
  documentSigning (RFC 9336) and emailProtection (for CMS verifiers such as NSS that check
  S/MIME usage); subject C, O = department name, organizationIdentifier (2.5.4.97)
  `NTRCN-<统一社会信用代码>` (ETSI EN 319 412-1 §5.1.4), OU = seal type, CN = seal name,
  serialNumber = seal id; CRL DP of the issuing CA.
- timestamp authority: under the root, EKU timeStamping only and critical (RFC 3161 §2.3).

Every private key is wrapped by the KEKs at rest (or lives in a PKCS#11 token); CRLs
(RFC 5280 §5) are re-signed on every revocation and kept in the database, so every replica
serves the same one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from keys.errors import KeysError
from keys.kek import KeyEncryptionKeys
from keys.pkcs11 import Pkcs11Signer, Pkcs11Token
from keys.pki_models import CertificateAuthority, IssuedCertificate, PkiKey
from keys.signer import Signer, SoftwareSigner, generate_private_key, private_pem
from kit.clock import utc

__all__ = [
    "DOCUMENT_SIGNING",
    "ISSUING",
    "ROOT",
    "CertificateChain",
    "KeyStore",
    "Pki",
    "PkiError",
    "PkiSettings",
    "RootOffline",
    "SealSubject",
    "load_pem_chain",
    "pem",
]

ROOT = "root"
ISSUING = "issuing"
#: id-kp-documentSigning (RFC 9336 §3.1).
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: Certificates start a little in the past so a verifier whose clock lags still accepts
#: a certificate issued a moment ago.
BACKDATE = timedelta(minutes=5)
REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "certificate_hold": x509.ReasonFlags.certificate_hold,
}

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PkiError(KeysError):
    code = "pki_error"
    status = 409


class RootOffline(PkiError):
    """The operation needs the root CA key, which has been exported and removed."""

    code = "root_key_offline"


@dataclass(frozen=True)
class PkiSettings:
    """Names and lifetimes of the hierarchy. `issuer` is the service's base URL, under
    which CRLs are published (`{issuer}/pki/crl/<ca>.crl`)."""

    issuer: str
    province: str = "示范省"
    root_lifetime: timedelta = timedelta(days=20 * 365)
    issuing_lifetime: timedelta = timedelta(days=10 * 365)
    tsa_lifetime: timedelta = timedelta(days=6 * 365)
    seal_lifetime: timedelta = timedelta(days=3 * 365)
    #: an online CA re-signs its CRL at least this often (and at every revocation)
    crl_lifetime: timedelta = timedelta(days=7)
    #: the root is usually offline: its CRL is signed for a year at each ceremony
    root_crl_lifetime: timedelta = timedelta(days=365)

    def crl_url(self, ca_name: str) -> str:
        return f"{self.issuer.rstrip('/')}/pki/crl/{ca_name}.crl"


@dataclass(frozen=True)
class SealSubject:
    """Who a seal certificate names."""

    seal_id: str
    seal_name: str
    seal_type: str
    department_uscc: str
    department_name: str


@dataclass(frozen=True)
class CertificateChain:
    """An end-entity certificate and its issuers up to and including the root."""

    certificates: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    def der(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self.certificates]


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_pem_chain(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode("ascii"))


def _serial_hex(serial: int) -> str:
    return f"{serial:x}"


def _name(*parts: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _public_pem(key: PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


class KeyStore:
    """Creates PKI keys in a backend and opens them as `Signer`s.

    `software` keys are generated here and kept only wrapped by the KEKs
    (AAD `pki-key:<id>`); `pkcs11` keys are generated in the token and never leave it.
    Which backend a key uses is recorded on its row, so callers only ever see `Signer`."""

    def __init__(self, keks: KeyEncryptionKeys, token: Pkcs11Token | None = None) -> None:
        self.keks = keks
        self.token = token
        self._cache: dict[str, Signer] = {}

    @property
    def backends(self) -> tuple[str, ...]:
        return ("software", "pkcs11") if self.token is not None else ("software",)

    @staticmethod
    def _aad(key_id: str) -> str:
        return f"pki-key:{key_id}"

    def create(
        self, session: Session, *, prefix: str, alg: str, backend: str, now: datetime
    ) -> tuple[PkiKey, PublicKey]:
        key_id = f"{prefix}-{secrets.token_hex(8)}"
        if backend == "software":
            private = generate_private_key(alg)
            public: PublicKey = private.public_key()
            row = PkiKey(
                id=key_id,
                alg=alg,
                backend="software",
                wrapped_private=self.keks.wrap(private_pem(private), aad=self._aad(key_id)),
                public_key_pem=_public_pem(public),
                created_at=now,
            )
        elif backend == "pkcs11":
            if self.token is None:
                raise PkiError("no PKCS#11 token is configured (TONGBAN_PKCS11_*)")
            public = self.token.generate(key_id, alg)
            row = PkiKey(
                id=key_id,
                alg=alg,
                backend="pkcs11",
                token_label=key_id,
                public_key_pem=_public_pem(public),
                created_at=now,
            )
        else:
            raise PkiError(f"unknown key backend {backend!r}")
        session.add(row)
        session.flush()
        return row, public

    def private_key(self, row: PkiKey) -> PrivateKey:
        """The in-memory key, for CA operations that `cryptography` signs itself."""
        if row.backend == "offline":
            raise RootOffline(
                "this CA key has been exported and removed from the service",
                detail=row.id,
            )
        if row.backend != "software" or row.wrapped_private is None:
            raise PkiError(f"key {row.id} cannot be used in software ({row.backend})")
        pem_bytes = self.keks.unwrap(row.wrapped_private, aad=self._aad(row.id))
        key = serialization.load_pem_private_key(pem_bytes, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise PkiError("unsupported key type")
        return key

    def signer(self, row: PkiKey, kid: str | None = None) -> Signer:
        """A `Signer` for the key; the caller cannot tell where the key lives."""
        kid = kid or row.id
        cache_key = f"{row.id}|{kid}"
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        signer: Signer
        if row.backend == "software":
            signer = SoftwareSigner(kid, row.alg, self.private_key(row))
        elif row.backend == "pkcs11":
            if self.token is None or row.token_label is None:
                raise PkiError("this key lives in a PKCS#11 token that is not configured")
            signer = Pkcs11Signer(self.token, kid, row.alg, row.token_label)
        else:
            raise PkiError(f"key {row.id} is {row.backend} and cannot sign")
        self._cache[cache_key] = signer
        return signer

    def destroy(self, row: PkiKey) -> None:
        """Destroy a private key (renewed or revoked seal): it can never sign again."""
        if row.backend == "pkcs11" and self.token is not None and row.token_label:
            self.token.destroy(row.token_label)
        row.wrapped_private = None
        row.backend = "destroyed"
        for key in [k for k in self._cache if k.startswith(f"{row.id}|")]:
            del self._cache[key]


class Pki:
    """The hierarchy's operations. Each takes the session (the caller owns the transaction)
    and `now`; nothing reads the clock or a global."""

    def __init__(self, keys: KeyStore, settings: PkiSettings) -> None:
        self.keys = keys
        self.settings = settings

    # -- reading -----------------------------------------------------------------------

    def ca(self, session: Session, name: str) -> CertificateAuthority:
        row = session.get(CertificateAuthority, name)
        if row is None:
            raise PkiError(f"the PKI has no CA {name!r}: run `tongban pki init`")
        return row

    def is_initialised(self, session: Session) -> bool:
        return session.get(CertificateAuthority, ROOT) is not None

    def ca_certificate(self, session: Session, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca(session, name).certificate_pem.encode())

    def root_certificate(self, session: Session) -> x509.Certificate:
        return self.ca_certificate(session, ROOT)

    def chain_for(self, session: Session, cert_row: IssuedCertificate) -> CertificateChain:
        """The certificate with its issuers up to the root (for `x5c` and CMS)."""
        certs = [x509.load_pem_x509_certificate(cert_row.certificate_pem.encode())]
        name: str | None = cert_row.ca_name
        while name is not None:
            ca = self.ca(session, name)
            certs.append(x509.load_pem_x509_certificate(ca.certificate_pem.encode()))
            name = ca.parent
        return CertificateChain(tuple(certs))

    def certificate(self, session: Session, serial: str) -> IssuedCertificate:
        row = session.get(IssuedCertificate, serial)
        if row is None:
            raise PkiError(f"no certificate with serial {serial}")
        return row

    def certificates(
        self, session: Session, *, purpose: str | None = None
    ) -> list[IssuedCertificate]:
        query = select(IssuedCertificate).order_by(IssuedCertificate.created_at.desc())
        if purpose is not None:
            query = query.where(IssuedCertificate.purpose == purpose)
        return list(session.execute(query).scalars())

    def authorities(self, session: Session) -> list[CertificateAuthority]:
        return list(
            session.execute(
                select(CertificateAuthority).order_by(CertificateAuthority.created_at)
            ).scalars()
        )

    def key_row(self, session: Session, key_id: str) -> PkiKey:
        row = session.get(PkiKey, key_id)
        if row is None:
            raise PkiError(f"no key {key_id}")
        return row

    # -- building ----------------------------------------------------------------------

    def _builder(
        self,
        *,
        subject: x509.Name,
        issuer: x509.Name,
        public: PublicKey,
        not_before: datetime,
        not_after: datetime,
        issuer_public: PublicKey | None,
        crl_ca: str | None,
    ) -> tuple[x509.CertificateBuilder, int]:
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        if issuer_public is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
                critical=False,
            )
        if crl_ca is not None:
            builder = builder.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[
                                x509.UniformResourceIdentifier(self.settings.crl_url(crl_ca))
                            ],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                critical=False,
            )
        return builder, serial

    @staticmethod
    def _ca_usage() -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )

    @staticmethod
    def _signing_usage() -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=True,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )

    def _add_ca(
        self,
        session: Session,
        *,
        name: str,
        kind: str,
        parent: CertificateAuthority | None,
        cert: x509.Certificate,
        key_row: PkiKey,
        now: datetime,
    ) -> CertificateAuthority:
        row = CertificateAuthority(
            name=name,
            kind=kind,
            parent=parent.name if parent else None,
            key_id=key_row.id,
            certificate_pem=pem(cert),
            serial=_serial_hex(cert.serial_number),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            status="active",
            crl_number=0,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def init(self, session: Session, now: datetime) -> dict[str, Any]:
        """Create the hierarchy of a new province: root, issuing CA, timestamp authority,
        and the first CRL of each CA. Refuses if a root exists."""
        if self.is_initialised(session):
            raise PkiError("the PKI is already initialised")
        province = self.settings.province
        start = now - BACKDATE

        root_key, root_public = self.keys.create(
            session, prefix="ca-root", alg="ES256", backend="software", now=now
        )
        root_name = _name(
            (NameOID.COUNTRY_NAME, "CN"),
            (NameOID.ORGANIZATION_NAME, f"{province}政务服务平台"),
            (NameOID.COMMON_NAME, f"{province}政务电子认证根CA"),
        )
        builder, _ = self._builder(
            subject=root_name,
            issuer=root_name,
            public=root_public,
            not_before=start,
            not_after=now + self.settings.root_lifetime,
            issuer_public=None,
            crl_ca=None,
        )
        root_cert = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(self._ca_usage(), critical=True)
            .sign(self.keys.private_key(root_key), hashes.SHA256())
        )
        root = self._add_ca(
            session, name=ROOT, kind="root", parent=None, cert=root_cert, key_row=root_key, now=now
        )

        issuing = self._new_issuing_ca(session, root, now)
        self.issue_tsa_certificate(session, now)
        self.publish_crl(session, root.name, now)
        self.publish_crl(session, issuing.name, now)
        return self.summary(session)

    def _new_issuing_ca(
        self, session: Session, root: CertificateAuthority, now: datetime
    ) -> CertificateAuthority:
        root_private = self.keys.private_key(self.key_row(session, root.key_id))
        root_cert = x509.load_pem_x509_certificate(root.certificate_pem.encode())
        key_row, public = self.keys.create(
            session, prefix="ca-issuing", alg="ES256", backend="software", now=now
        )
        subject = _name(
            (NameOID.COUNTRY_NAME, "CN"),
            (NameOID.ORGANIZATION_NAME, f"{self.settings.province}政务服务平台"),
            (NameOID.COMMON_NAME, f"{self.settings.province}电子印章签发CA"),
        )
        not_after = min(now + self.settings.issuing_lifetime, root_cert.not_valid_after_utc)
        builder, _ = self._builder(
            subject=subject,
            issuer=root_cert.subject,
            public=public,
            not_before=now - BACKDATE,
            not_after=not_after,
            issuer_public=root_private.public_key(),
            crl_ca=root.name,
        )
        cert = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(self._ca_usage(), critical=True)
            .sign(root_private, hashes.SHA256())
        )
        return self._add_ca(
            session, name=ISSUING, kind="issuing", parent=root, cert=cert, key_row=key_row, now=now
        )

    def _issue_end_entity(
        self,
        session: Session,
        *,
        ca_name: str,
        purpose: str,
        holder: str,
        subject: x509.Name,
        key_row: PkiKey,
        public: PublicKey,
        now: datetime,
        not_after: datetime,
        eku: list[x509.ObjectIdentifier],
        eku_critical: bool,
        not_before: datetime | None = None,
    ) -> IssuedCertificate:
        ca = self.ca(session, ca_name)
        if ca.status != "active":
            raise PkiError(f"CA {ca_name} is {ca.status}")
        ca_private = self.keys.private_key(self.key_row(session, ca.key_id))
        ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        # RFC 5280 §6.1.3: a certificate cannot outlive its issuer on a validating path.
        not_after = min(not_after, ca_cert.not_valid_after_utc)
        builder, serial = self._builder(
            subject=subject,
            issuer=ca_cert.subject,
            public=public,
            not_before=not_before or now - BACKDATE,
            not_after=not_after,
            issuer_public=ca_private.public_key(),
            crl_ca=ca.name,
        )
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._signing_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=eku_critical)
        )
        cert = builder.sign(ca_private, hashes.SHA256())
        row = IssuedCertificate(
            serial=_serial_hex(serial),
            ca_name=ca.name,
            purpose=purpose,
            holder=holder,
            key_id=key_row.id,
            subject=cert.subject.rfc4514_string(),
            certificate_pem=pem(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            status="valid",
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def issue_tsa_certificate(self, session: Session, now: datetime) -> IssuedCertificate:
        """A new timestamp-authority key and certificate under the root (RFC 3161 §2.3:
        extendedKeyUsage timeStamping only, critical). Needs the root key online."""
        key_row, public = self.keys.create(
            session, prefix="tsa", alg="ES256", backend="software", now=now
        )
        subject = _name(
            (NameOID.COUNTRY_NAME, "CN"),
            (NameOID.ORGANIZATION_NAME, f"{self.settings.province}政务服务平台"),
            (NameOID.COMMON_NAME, f"{self.settings.province}可信时间戳服务"),
        )
        return self._issue_end_entity(
            session,
            ca_name=ROOT,
            purpose="tsa",
            holder="tsa",
            subject=subject,
            key_row=key_row,
            public=public,
            now=now,
            not_after=now + self.settings.tsa_lifetime,
            eku=[ExtendedKeyUsageOID.TIME_STAMPING],
            eku_critical=True,
        )

    def issue_seal_certificate(
        self,
        session: Session,
        now: datetime,
        *,
        subject: SealSubject,
        alg: str = "ES256",
        backend: str = "software",
        lifetime: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> IssuedCertificate:
        """A new key (in `backend`) and its seal certificate from the issuing CA."""
        key_row, public = self.keys.create(
            session, prefix=f"seal-{subject.seal_id[:12]}", alg=alg, backend=backend, now=now
        )
        name = _name(
            (NameOID.COUNTRY_NAME, "CN"),
            (NameOID.ORGANIZATION_NAME, subject.department_name),
            (NameOID.ORGANIZATION_IDENTIFIER, f"NTRCN-{subject.department_uscc}"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, subject.seal_type),
            (NameOID.COMMON_NAME, subject.seal_name),
            (NameOID.SERIAL_NUMBER, subject.seal_id),
        )
        return self._issue_end_entity(
            session,
            ca_name=ISSUING,
            purpose="seal",
            holder=subject.seal_id,
            subject=name,
            key_row=key_row,
            public=public,
            now=now,
            not_after=now + (lifetime or self.settings.seal_lifetime),
            eku=[DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION],
            eku_critical=False,
            not_before=not_before,
        )

    # -- timestamp authority -----------------------------------------------------------

    def tsa(self, session: Session, now: datetime) -> tuple[Signer, CertificateChain]:
        """The current timestamp-authority signer and its chain."""
        rows = [
            r
            for r in self.certificates(session, purpose="tsa")
            if r.status == "valid" and utc(r.not_before) <= now <= utc(r.not_after)
        ]
        if not rows:
            raise PkiError("no valid timestamp-authority certificate")
        row = rows[0]
        chain = self.chain_for(session, row)
        return self.keys.signer(self.key_row(session, row.key_id)), chain

    # -- revocation --------------------------------------------------------------------

    def revoke(
        self, session: Session, serial: str, now: datetime, *, reason: str = "unspecified"
    ) -> IssuedCertificate:
        """Revoke (or, with `certificate_hold`, suspend) a certificate and re-sign its CA's
        CRL at once (RFC 5280 §5.3.1)."""
        if reason not in REVOCATION_REASONS:
            raise PkiError(f"unknown revocation reason {reason!r}")
        row = self.certificate(session, serial)
        if row.status == "revoked":
            return row
        row.status = "on_hold" if reason == "certificate_hold" else "revoked"
        row.revoked_at = now
        row.revocation_reason = reason
        session.flush()
        self.publish_crl(session, row.ca_name, now)
        return row

    def release_hold(self, session: Session, serial: str, now: datetime) -> IssuedCertificate:
        """Lift a `certificateHold` (RFC 5280 §5.3.1: removed from the next CRL)."""
        row = self.certificate(session, serial)
        if row.status != "on_hold":
            raise PkiError("the certificate is not on hold")
        row.status = "valid"
        row.revoked_at = None
        row.revocation_reason = None
        session.flush()
        self.publish_crl(session, row.ca_name, now)
        return row

    def publish_crl(self, session: Session, ca_name: str, now: datetime) -> bytes:
        """Sign a new CRL for the CA (RFC 5280 §5): every revoked or held certificate it
        issued, with reason codes; cRLNumber increases by one."""
        ca = self.ca(session, ca_name)
        key_row = self.key_row(session, ca.key_id)
        private = self.keys.private_key(key_row)  # raises RootOffline for an exported root
        ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        lifetime = (
            self.settings.root_crl_lifetime if ca.kind == "root" else self.settings.crl_lifetime
        )
        number = ca.crl_number + 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now)
            .next_update(now + lifetime)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(private.public_key()),
                critical=False,
            )
        )
        revoked: Iterable[IssuedCertificate] = session.execute(
            select(IssuedCertificate).where(
                IssuedCertificate.ca_name == ca.name,
                IssuedCertificate.status.in_(("revoked", "on_hold")),
            )
        ).scalars()
        for entry in revoked:
            item = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(entry.serial, 16))
                .revocation_date(utc(entry.revoked_at or now))
                .add_extension(
                    x509.CRLReason(REVOCATION_REASONS[entry.revocation_reason or "unspecified"]),
                    critical=False,
                )
                .build()
            )
            builder = builder.add_revoked_certificate(item)
        crl = builder.sign(private, hashes.SHA256())
        der = crl.public_bytes(serialization.Encoding.DER)
        ca.crl_number = number
        ca.crl_der = der
        ca.crl_this_update = now
        ca.crl_next_update = now + lifetime
        session.flush()
        return der

    def current_crl(self, session: Session, ca_name: str, now: datetime) -> bytes:
        """The CA's latest CRL, re-signed first if it is past half its life and the CA
        key is online (the root's CRL is served as signed at the last ceremony)."""
        ca = self.ca(session, ca_name)
        if ca.crl_this_update is None or ca.crl_next_update is None or ca.crl_der is None:
            stale = True
        else:
            this_update, next_update = utc(ca.crl_this_update), utc(ca.crl_next_update)
            stale = now >= this_update + (next_update - this_update) / 2
        if stale and self.key_row(session, ca.key_id).backend == "software":
            return self.publish_crl(session, ca_name, now)
        if ca.crl_der is None:
            raise PkiError(f"CA {ca_name} has no CRL yet")
        return ca.crl_der

    def refresh_crls(self, session: Session, now: datetime) -> dict[str, str]:
        """Re-sign every CRL whose CA key is online; report which ones are offline."""
        result: dict[str, str] = {}
        for ca in self.authorities(session):
            try:
                self.publish_crl(session, ca.name, now)
                result[ca.name] = "published"
            except RootOffline:
                result[ca.name] = "offline"
        return result

    # -- root key ceremony -------------------------------------------------------------

    def export_root(self, session: Session, now: datetime) -> bytes:
        """Export the root key, still wrapped by the KEKs, and remove it from the service.

        The service keeps the root certificate and its last CRL, and goes on issuing seal
        certificates and CRLs with the issuing CA alone. Before removal, the root CRL is
        re-signed so that it lasts a full `root_crl_lifetime`."""
        root = self.ca(session, ROOT)
        key_row = self.key_row(session, root.key_id)
        if key_row.backend != "software" or key_row.wrapped_private is None:
            raise RootOffline("the root key is not in the service")
        self.publish_crl(session, ROOT, now)
        pem_bytes = self.keys.keks.unwrap(key_row.wrapped_private, aad=f"pki-key:{key_row.id}")
        blob = {
            "format": "tongban-root-key/1",
            "ca": ROOT,
            "key_id": key_row.id,
            "alg": key_row.alg,
            "certificate_pem": root.certificate_pem,
            "wrapped_private": self.keys.keks.wrap(pem_bytes, aad=f"pki-root-export:{key_row.id}"),
            "exported_at": now.isoformat(),
        }
        key_row.wrapped_private = None
        key_row.backend = "offline"
        session.flush()
        return json.dumps(blob, indent=2, ensure_ascii=False).encode("utf-8")

    def import_root(self, session: Session, blob: bytes) -> None:
        """Bring an exported root key back online (for a ceremony: re-sign the root CRL,
        issue a new issuing CA or TSA certificate)."""
        try:
            data = json.loads(blob)
            key_id = data["key_id"]
            wrapped = data["wrapped_private"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PkiError("not an exported root key") from exc
        root = self.ca(session, ROOT)
        if root.key_id != key_id or data.get("certificate_pem") != root.certificate_pem:
            raise PkiError("this exported key belongs to another root")
        pem_bytes = self.keys.keks.unwrap(wrapped, aad=f"pki-root-export:{key_id}")
        private = serialization.load_pem_private_key(pem_bytes, password=None)
        root_cert = x509.load_pem_x509_certificate(root.certificate_pem.encode())
        if private.public_key() != root_cert.public_key():
            raise PkiError("the exported key does not match the root certificate")
        key_row = self.key_row(session, key_id)
        key_row.wrapped_private = self.keys.keks.wrap(pem_bytes, aad=f"pki-key:{key_id}")
        key_row.backend = "software"
        session.flush()

    # -- publication -------------------------------------------------------------------

    def summary(self, session: Session) -> dict[str, Any]:
        result: dict[str, Any] = {"authorities": []}
        for ca in self.authorities(session):
            key_row = self.key_row(session, ca.key_id)
            result["authorities"].append(
                {
                    "name": ca.name,
                    "kind": ca.kind,
                    "subject": x509.load_pem_x509_certificate(
                        ca.certificate_pem.encode()
                    ).subject.rfc4514_string(),
                    "serial": ca.serial,
                    "not_before": utc(ca.not_before).isoformat(),
                    "not_after": utc(ca.not_after).isoformat(),
                    "key": key_row.backend,
                    "crl_url": self.settings.crl_url(ca.name),
                    "crl_number": ca.crl_number,
                    "crl_next_update": utc(ca.crl_next_update).isoformat()
                    if ca.crl_next_update
                    else None,
                }
            )
        return result
