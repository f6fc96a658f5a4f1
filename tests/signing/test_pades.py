"""Sealed PDF (PAdES B-T): validated by our verifier, by pyHanko's validator and by
Poppler's `pdfsig`; negative tests per sub-indication; hostile files (issue 3)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kit.db import transaction
from signing import pades
from signing.report import Indication, SubIndication
from signing.trust import TrustAnchors, ValidationPolicy
from tests.signing.province import Province, blank_pdf


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (Debian poppler-utils / libnss3-tools)")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture(scope="module")
def seal_id(province: Province) -> str:
    return province.new_seal().id


@pytest.fixture(scope="module")
def sealed(province: Province, seal_id: str) -> bytes:
    return pades.seal(
        blank_pdf(),
        province.sealer(seal_id),
        province.tsa(),
        now=province.clock.now(),
        location="示范市",
    )


def test_sealed_pdf_passes_with_timestamp(province: Province, sealed: bytes) -> None:
    report = pades.verify(sealed, province.anchors(), province.clock.now())
    assert report.indication is Indication.PASSED, report.to_dict()
    assert report.signing_time_source == "timestamp"
    assert report.signing_time == province.clock.now().replace(microsecond=0)
    assert report.timestamp_authority and "时间戳" in report.timestamp_authority
    assert report.seal is not None and report.seal.department_name == "示范市民政局"
    assert len(report.certificate_path) == 3


def test_pyhanko_validator_agrees(province: Province, sealed: bytes) -> None:
    from asn1crypto import crl as asn1_crl
    from asn1crypto import x509 as asn1_x509
    from pyhanko.keys import load_cert_from_pemder  # noqa: F401
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = asn1_x509.Certificate.load(province.root().public_bytes(serialization.Encoding.DER))
    crls = [
        asn1_crl.CertificateList.load(c.public_bytes(serialization.Encoding.DER))
        for c in province.crls()
    ]
    context = ValidationContext(
        trust_roots=[root],
        crls=crls,
        allow_fetching=False,
        revocation_mode="hard-fail",
        moment=province.clock.now() + timedelta(minutes=1),
    )
    reader = PdfFileReader(io.BytesIO(sealed))
    [embedded] = reader.embedded_regular_signatures
    status = asyncio.run(
        async_validate_pdf_signature(
            embedded, signer_validation_context=context, ts_validation_context=context
        )
    )
    assert status.intact and status.valid
    assert status.trusted, status.pretty_print_details()
    assert status.revoked is False
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.trusted
    assert status.bottom_line


def test_pdfsig_agrees(province: Province, sealed: bytes, tmp_path: Path) -> None:
    pdfsig = _need("pdfsig")
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed)
    out = subprocess.run([pdfsig, str(path)], capture_output=True, text=True, check=False).stdout
    assert "Signature is Valid." in out
    assert "Total document signed" in out
    # with the root in an NSS database pdfsig trusts the whole chain
    certutil = _need("certutil")
    nss = tmp_path / "nss"
    nss.mkdir()
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(province.root().public_bytes(serialization.Encoding.PEM))
    subprocess.run([certutil, "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(
        [
            certutil,
            "-A",
            "-d",
            f"sql:{nss}",
            "-n",
            "root",
            "-t",
            "CT,C,C",
            "-a",
            "-i",
            str(root_pem),
        ],
        check=True,
    )
    out = subprocess.run(
        [pdfsig, "-nssdir", f"sql:{nss}", str(path)], capture_output=True, text=True, check=False
    ).stdout
    assert "Signature is Valid." in out
    assert "Certificate is Trusted." in out


def test_visible_stamp_is_on_the_page(province: Province, sealed: bytes, tmp_path: Path) -> None:
    pdftoppm = _need("pdftoppm")
    from PIL import Image

    (tmp_path / "s.pdf").write_bytes(sealed)
    subprocess.run(
        [pdftoppm, "-r", "36", "-png", str(tmp_path / "s.pdf"), str(tmp_path / "p")], check=True
    )
    [png] = list(tmp_path.glob("p*.png"))
    image = Image.open(png).convert("RGB")
    data = image.tobytes()
    red = sum(
        1 for i in range(0, len(data), 3) if data[i] > 150 and data[i + 1] < 80 and data[i + 2] < 80
    )
    assert red > 50  # the red stamp is drawn


def test_two_seals_on_one_pdf(province: Province, sealed: bytes) -> None:
    other = province.new_seal(
        department_name="示范市公安局", name="示范市公安局公章", seal_type="公章"
    )
    twice = pades.seal(sealed, province.sealer(other.id), province.tsa(), now=province.clock.now())
    reports = pades.verify_all(twice, province.anchors(), province.clock.now())
    assert [r.passed for r in reports] == [True, True], [r.to_dict() for r in reports]
    assert reports[1].seal and reports[1].seal.department_name == "示范市公安局"


def test_pkcs_backend_invisible_to_pades_caller(province: Province, sealed: bytes) -> None:
    """A PS256 (RSA-PSS) seal seals PDFs through the same call."""
    seal = province.new_seal(alg="PS256", name="示范市民政局财务专用章", seal_type="财务专用章")
    out = pades.seal(
        blank_pdf(), province.sealer(seal.id), province.tsa(), now=province.clock.now()
    )
    assert pades.verify(out, province.anchors(), province.clock.now()).passed


# -- negative -----------------------------------------------------------------------------


def test_tampered_byte_is_hash_failure(province: Province, sealed: bytes) -> None:
    index = sealed.index(b"(Licence)") + 2
    tampered = sealed[:index] + b"X" + sealed[index + 1 :]
    report = pades.verify(tampered, province.anchors(), province.clock.now())
    assert report.indication is Indication.FAILED
    assert report.sub_indication is SubIndication.HASH_FAILURE


def test_untrusted_root(province: Province, foreign_province: Province) -> None:
    seal = foreign_province.new_seal()
    out = pades.seal(
        blank_pdf(),
        foreign_province.sealer(seal.id),
        foreign_province.tsa(),
        now=province.clock.now(),
    )
    report = pades.verify(out, province.anchors(), province.clock.now())
    assert report.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND


def test_revocation_after_timestamp_keeps_seal_valid_but_sealing_after_fails(
    province: Province,
) -> None:
    seal = province.new_seal()
    before = pades.seal(
        blank_pdf(), province.sealer(seal.id), province.tsa(), now=province.clock.now()
    )
    sealer = province.force_sealer(seal.id)
    revoked_at = province.clock.now() + timedelta(hours=2)
    with transaction(province.factory) as s:
        province.pki.revoke(s, seal.certificate_serial, revoked_at, reason="key_compromise")
    tsa = province.tsa()
    province.clock.advance(3 * 3600)  # the TSA stamps 3 h later, after the revocation
    try:
        after = pades.seal(blank_pdf(), sealer, tsa, now=province.clock.now())
        moment = province.clock.now()
        anchors = province.anchors(moment)
    finally:
        province.clock.advance(-3 * 3600)
    r_before = pades.verify(before, anchors, moment)
    assert r_before.passed, r_before.to_dict()
    assert any("after the timestamp" in c.detail for c in r_before.checks)
    r_after = pades.verify(after, anchors, moment)
    assert r_after.indication is Indication.FAILED
    assert r_after.sub_indication is SubIndication.REVOKED


def test_expired_seal_certificate(province: Province) -> None:
    """Sealed while valid and checked after expiry: the timestamp proves it (PASSED).
    Sealed after expiry: the timestamp proves that too (FAILED/EXPIRED)."""
    seal = province.new_seal(lifetime=timedelta(days=10))
    good = pades.seal(
        blank_pdf(), province.sealer(seal.id), province.tsa(), now=province.clock.now()
    )
    sealer = province.force_sealer(seal.id)
    tsa = province.tsa()
    province.clock.advance(20 * 86400)
    try:
        late = pades.seal(blank_pdf(), sealer, tsa, now=province.clock.now())
        moment = province.clock.now()
        anchors = province.anchors(moment)
    finally:
        province.clock.advance(-20 * 86400)
    assert pades.verify(good, anchors, moment).passed
    report = pades.verify(late, anchors, moment)
    assert report.indication is Indication.FAILED
    assert report.sub_indication is SubIndication.EXPIRED


@pytest.mark.parametrize("cut", [100, 2000, -500, -10])
def test_truncated_pdf(province: Province, sealed: bytes, cut: int) -> None:
    report = pades.verify(sealed[:cut], province.anchors(), province.clock.now())
    assert not report.passed


def test_hostile_files_give_reports(province: Province, sealed: bytes) -> None:
    anchors, now = province.anchors(), province.clock.now()
    assert pades.verify(b"", anchors, now).sub_indication is SubIndication.FORMAT_FAILURE
    assert pades.verify(b"GIF89a", anchors, now).sub_indication is SubIndication.FORMAT_FAILURE
    assert pades.verify(b"%PDF-1.7\n" + b"(" * 100_000, anchors, now).indication is not (
        Indication.PASSED
    )
    assert pades.verify(blank_pdf(), anchors, now).sub_indication is (
        SubIndication.SIGNED_DATA_NOT_FOUND
    )
    small = ValidationPolicy(max_pdf_bytes=1000)
    report = pades.verify(sealed, anchors, now, policy=small)
    assert report.sub_indication is SubIndication.FORMAT_FAILURE
    # garbage inside the signature's /Contents
    start = sealed.index(b"/Contents <") + len(b"/Contents <")
    broken = sealed[:start] + b"00" * 40 + sealed[start + 80 :]
    assert not pades.verify(broken, anchors, now).passed


def test_without_crls_is_try_later(province: Province, sealed: bytes) -> None:
    anchors = TrustAnchors(roots=(province.root(),))
    report = pades.verify(sealed, anchors, province.clock.now())
    assert report.sub_indication is SubIndication.TRY_LATER
