"""The provincial PKI: certificate profiles (RFC 5280), independent path validation with
`cryptography.x509.verification`, CRLs on revocation, keys wrapped at rest, and the root
key exported and removed with the service running on the issuing CA alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keys.errors import UnwrapError
from keys.kek import KeyEncryptionKeys, new_kek
from keys.pki import (
    DOCUMENT_SIGNING,
    ISSUING,
    ROOT,
    KeyStore,
    Pki,
    PkiError,
    PkiSettings,
    RootOffline,
    SealSubject,
)
from keys.pki_models import PkiKey
from kit.db import transaction

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ISSUER = "https://tongban.example.gov.cn"
SUBJECT = SealSubject("seal0001", "示范市民政局公章", "公章", "91110108MA01AB2C3T", "示范市民政局")


@pytest.fixture
def pki(factory: sessionmaker[Session]) -> Pki:
    pki = Pki(KeyStore(KeyEncryptionKeys([new_kek()])), PkiSettings(issuer=ISSUER))
    with transaction(factory) as s:
        pki.init(s, NOW)
    return pki


def _ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def _verifier(root: x509.Certificate, at: datetime) -> xv.ClientVerifier:
    return (
        xv.PolicyBuilder()
        .store(xv.Store([root]))
        .time(at)
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=xv.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )


def test_profiles(pki: Pki, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        root = pki.root_certificate(s)
        issuing = pki.ca_certificate(s, ISSUING)
        seal_row = pki.issue_seal_certificate(s, NOW, subject=SUBJECT)
        seal = pki.chain_for(s, seal_row).leaf
        _, tsa_chain = pki.tsa(s, NOW)
    tsa = tsa_chain.leaf

    bc = _ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = _ext(root, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not (ku.value.digital_signature or ku.value.content_commitment)
    assert root.subject == root.issuer

    bc = _ext(issuing, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert _ext(issuing, x509.KeyUsage).value.key_cert_sign
    aki = _ext(issuing, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(root, x509.SubjectKeyIdentifier).value.digest
    [dp] = _ext(issuing, x509.CRLDistributionPoints).value
    assert dp.full_name == [x509.UniformResourceIdentifier(f"{ISSUER}/pki/crl/root.crl")]

    assert not _ext(seal, x509.BasicConstraints).value.ca
    ku = _ext(seal, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign
    assert DOCUMENT_SIGNING in _ext(seal, x509.ExtendedKeyUsage).value
    [dp] = _ext(seal, x509.CRLDistributionPoints).value
    assert dp.full_name == [x509.UniformResourceIdentifier(f"{ISSUER}/pki/crl/issuing.crl")]
    assert _ext(seal, x509.AuthorityKeyIdentifier).value.key_identifier == (
        _ext(issuing, x509.SubjectKeyIdentifier).value.digest
    )
    subject = seal.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "示范市民政局"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value == (
        "NTRCN-91110108MA01AB2C3T"
    )
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "seal0001"

    eku = _ext(tsa, x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert tsa.issuer == root.subject


def test_independent_path_validation(pki: Pki, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        chain = pki.chain_for(s, pki.issue_seal_certificate(s, NOW, subject=SUBJECT))
        _, tsa_chain = pki.tsa(s, NOW)
    seal, issuing, root = chain.certificates
    verified = _verifier(root, NOW + timedelta(days=1)).verify(seal, [issuing])
    assert verified.chain == [seal, issuing, root]
    assert _verifier(root, NOW).verify(tsa_chain.leaf, []).chain[-1] == root
    with pytest.raises(xv.VerificationError):  # after the seal certificate expired
        _verifier(root, NOW + timedelta(days=4000)).verify(seal, [issuing])


def test_private_keys_are_wrapped(pki: Pki, factory: sessionmaker[Session]) -> None:
    with factory() as s:
        rows = list(s.execute(select(PkiKey)).scalars())
    assert {r.backend for r in rows} == {"software"}
    assert len(rows) == 3  # root, issuing, TSA
    for row in rows:
        assert row.wrapped_private and "PRIVATE KEY" not in row.wrapped_private
        assert b"PRIVATE KEY" in pki.keys.keks.unwrap(row.wrapped_private, aad=f"pki-key:{row.id}")
        with pytest.raises(UnwrapError):  # bound to its own record
            pki.keys.keks.unwrap(row.wrapped_private, aad="pki-key:another")


def test_revocation_resigns_the_crl(pki: Pki, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        row = pki.issue_seal_certificate(s, NOW, subject=SUBJECT)
        before = x509.load_der_x509_crl(pki.current_crl(s, ISSUING, NOW))
        pki.revoke(s, row.serial, NOW + timedelta(hours=1), reason="key_compromise")
        issuing = pki.ca_certificate(s, ISSUING)
        after = x509.load_der_x509_crl(pki.current_crl(s, ISSUING, NOW + timedelta(hours=1)))
    number = lambda crl: crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(after) == number(before) + 1
    assert after.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    entry = after.get_revoked_certificate_by_serial_number(int(row.serial, 16))
    assert entry is not None
    assert entry.revocation_date_utc == NOW + timedelta(hours=1)
    assert after.next_update_utc == NOW + timedelta(hours=1, days=7)
    with transaction(factory) as s, pytest.raises(PkiError):
        pki.revoke(s, row.serial, NOW, reason="because")


def test_stale_crl_is_refreshed_on_read(pki: Pki, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        crl = x509.load_der_x509_crl(pki.current_crl(s, ISSUING, NOW + timedelta(days=5)))
    assert crl.last_update_utc == NOW + timedelta(days=5)


def test_init_twice_is_refused(pki: Pki, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s, pytest.raises(PkiError, match="already"):
        pki.init(s, NOW)


def test_root_export_and_offline_operation(pki: Pki, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as s:
        blob = pki.export_root(s, NOW)
        root_key = pki.key_row(s, pki.ca(s, ROOT).key_id)
        assert root_key.backend == "offline" and root_key.wrapped_private is None
    data = json.loads(blob)
    assert data["format"] == "tongban-root-key/1"
    assert "PRIVATE" not in blob.decode()

    # the service goes on with the issuing CA alone
    with transaction(factory) as s:
        row = pki.issue_seal_certificate(s, NOW, subject=SUBJECT)
        pki.revoke(s, row.serial, NOW)
        assert pki.refresh_crls(s, NOW) == {ROOT: "offline", ISSUING: "published"}
        with pytest.raises(RootOffline):
            pki.publish_crl(s, ROOT, NOW)
        with pytest.raises(RootOffline):
            pki.issue_tsa_certificate(s, NOW)
        with pytest.raises(RootOffline):
            pki.export_root(s, NOW)
        assert pki.current_crl(s, ROOT, NOW + timedelta(days=300))  # last signed root CRL

    # a ceremony brings it back
    with transaction(factory) as s:
        with pytest.raises(PkiError):
            pki.import_root(s, b"{}")
        pki.import_root(s, blob)
        pki.publish_crl(s, ROOT, NOW + timedelta(days=1))
