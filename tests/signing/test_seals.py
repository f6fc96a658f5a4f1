"""Seal lifecycle on both storage backends: issue, list, suspend, reinstate, renew,
revoke; each recorded; CRLs follow; only a department's own clients may use its seals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from sqlalchemy.orm import Session, sessionmaker

from keys.pki import ISSUING
from keys.pki_models import PkiKey
from kit.db import transaction
from kit.identifiers import IdentifierError
from signing import jws_seal, seals
from signing.errors import MalformedInput, SealForbidden, SealNotFound, SealNotUsable
from signing.report import SubIndication
from tests.signing.province import OTHER_USCC, USCC, Province, make_province

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def province(factory: sessionmaker[Session]) -> Province:
    return make_province(factory, start=START)


def _crl(province: Province) -> x509.CertificateRevocationList:
    with province.factory() as s:
        der = province.pki.ca(s, ISSUING).crl_der
    assert der is not None
    return x509.load_der_x509_crl(der)


def test_create_records_and_lists(province: Province) -> None:
    seal = province.new_seal(department_uscc=USCC.lower())
    assert seal.department_uscc == USCC
    assert seal.status == "active" and seal.version == 1
    assert seal.purpose == "业务专用章"
    official = province.new_seal(seal_type="公章", name="示范市民政局公章")
    assert official.purpose == ""
    with province.factory() as s:
        assert [x.id for x in seals.list_seals(s, department_uscc=USCC)] == [seal.id, official.id]
        assert seals.list_seals(s, department_uscc=OTHER_USCC) == []
        [event] = seals.seal_events(s, seal.id)
        assert event.event == "seal.created"
        summary = seals.seal_summary(seals.get_seal(s, seal.id))
        assert summary["status"] == "active" and summary["key_backend"] == "software"
        key = s.get(PkiKey, seal.key_id)
        assert (
            key is not None
            and key.wrapped_private
            and b"PRIVATE" not in key.wrapped_private.encode()
        )


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("department_uscc", "91110108MA01AB2C3X", IdentifierError),
        ("seal_type", "私章", MalformedInput),
        ("name", "", MalformedInput),
        ("name", "长" * 65, MalformedInput),
        ("alg", "RS256", MalformedInput),
    ],
)
def test_create_validates(
    province: Province, field: str, value: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        province.new_seal(**{field: value})


def test_suspend_reinstate_revoke_follow_the_crl(province: Province) -> None:
    seal = province.new_seal()
    serial = int(seal.certificate_serial, 16)
    with transaction(province.factory) as s:
        seals.suspend_seal(s, province.clock, province.pki, seal.id, actor="admin:li")
    entry = _crl(province).get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.certificate_hold
    )
    with pytest.raises(SealNotUsable), province.factory() as s:
        seals.open_seal(s, province.pki, seal.id, province.clock.now())
    with transaction(province.factory) as s:
        seals.reinstate_seal(s, province.clock, province.pki, seal.id, actor="admin:li")
    assert _crl(province).get_revoked_certificate_by_serial_number(serial) is None
    with transaction(province.factory) as s:
        seals.revoke_seal(s, province.clock, province.pki, seal.id, reason="key_compromise")
    entry = _crl(province).get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    with province.factory() as s:
        events = [e.event for e in seals.seal_events(s, seal.id)]
        assert events == ["seal.created", "seal.suspended", "seal.reinstated", "seal.revoked"]
        assert s.get(PkiKey, seal.key_id).backend == "destroyed"  # type: ignore[union-attr]
        with pytest.raises(SealNotUsable):
            seals.open_seal(s, province.pki, seal.id, province.clock.now())
    with transaction(province.factory) as s, pytest.raises(SealNotUsable):
        seals.renew_seal(s, province.clock, province.pki, seal.id)


def test_renew_keeps_old_documents_valid(province: Province) -> None:
    seal = province.new_seal()
    old_token = jws_seal.seal({"a": 1}, province.sealer(seal.id), now=province.clock.now())
    old_key = seal.key_id
    with transaction(province.factory) as s:
        renewed = seals.renew_seal(s, province.clock, province.pki, seal.id, actor="admin")
    assert renewed.version == 2 and renewed.key_id != old_key
    new_token = jws_seal.seal({"a": 2}, province.sealer(seal.id), now=province.clock.now())
    anchors = province.anchors()
    assert jws_seal.verify(old_token, anchors, province.clock.now()).passed
    assert jws_seal.verify(new_token, anchors, province.clock.now()).passed
    with province.factory() as s:
        assert s.get(PkiKey, old_key).backend == "destroyed"  # type: ignore[union-attr]
    # revoking the seal revokes every certificate it ever had
    with transaction(province.factory) as s:
        seals.revoke_seal(s, province.clock, province.pki, seal.id)
    later = province.clock.now() + timedelta(minutes=1)
    anchors = province.anchors(later)
    for token in (old_token, new_token):
        assert jws_seal.verify(token, anchors, later).sub_indication is (
            SubIndication.REVOKED_NO_POE
        )


def test_seal_outside_validity_cannot_be_opened(province: Province) -> None:
    seal = province.new_seal(lifetime=timedelta(days=5))
    with province.factory() as s, pytest.raises(SealNotUsable):
        seals.open_seal(s, province.pki, seal.id, province.clock.now() + timedelta(days=6))


def test_only_own_department_with_scope(province: Province) -> None:
    seal = province.new_seal()
    now = province.clock.now()
    with province.factory() as s:
        opened = seals.open_seal(
            s, province.pki, seal.id, now, department_uscc=USCC, scopes={"seal:use", "openid"}
        )
        assert opened.department_uscc == USCC
        with pytest.raises(SealForbidden):
            seals.open_seal(
                s, province.pki, seal.id, now, department_uscc=OTHER_USCC, scopes={"seal:use"}
            )
        with pytest.raises(SealForbidden):
            seals.open_seal(s, province.pki, seal.id, now, department_uscc=USCC, scopes={"openid"})
        with pytest.raises(SealForbidden):
            seals.open_seal(
                s, province.pki, seal.id, now, department_uscc=None, scopes={"seal:use"}
            )
        with pytest.raises(SealNotFound):
            seals.get_seal(s, "nope")
