"""Sealed PDF: PAdES baseline B-T (ETSI EN 319 142-1 §6.3) made with pyHanko.

`seal` adds a signature field on a page with the seal's red stamp as its visible
appearance, signs with the seal's `Signer` (software or PKCS#11 through one adapter), and
adds a signature timestamp from the province's own TSA (RFC 3161) — the proof of
existence that lets the seal be checked after its certificate expires or is revoked.

`verify` is offline and returns a frozen report: pyHanko reads the PDF and checks the
byte ranges, the CMS digest and signature and what changed after signing; the signing
certificate's path, its revocation and the timestamp are judged by `signing.trust` as for
JWS (EN 319 102-1 §5.5, validation with time).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signing.errors import InputTooLarge, MalformedInput
from signing.report import (
    Check,
    Indication,
    SubIndication,
    VerificationReport,
    seal_identity,
    summarise_certificate,
)
from signing.seal_image import seal_png
from signing.seals import SealSigner
from signing.trust import CrlIndex, TrustAnchors, ValidationPolicy, conclude, validate_path
from signing.tsa import TimestampAuthority

__all__ = ["InProcessTimeStamper", "StampPlacement", "seal", "verify", "verify_all"]


@dataclass(frozen=True)
class StampPlacement:
    """Where the visible seal goes: a page (0-based; -1 = last) and a square box in PDF
    points from the page's lower-left corner."""

    page: int = -1
    x: float = 400
    y: float = 80
    size: float = 120


def looks_like_pdf(data: bytes | bytearray | memoryview) -> bool:
    """A PDF header near the start (ISO 32000 §7.5.2 lets bytes come before it)."""
    return bytes(data[:1024]).lstrip().startswith(b"%PDF-")


def _pyhanko_signer(sealer: SealSigner) -> Any:
    """Adapt our `Signer` (JWS-style raw signatures) to pyHanko's CMS signer interface."""
    from pyhanko.sign.signers.pdf_cms import Signer as PyHankoSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    certs = [asn1_x509.Certificate.load(der) for der in sealer.chain.der()]
    if sealer.signer.alg == "ES256":
        mechanism = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    else:
        mechanism = algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams(
                    {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "mask_gen_algorithm": {
                            "algorithm": "mgf1",
                            "parameters": {"algorithm": "sha256"},
                        },
                        "salt_length": 32,
                    }
                ),
            }
        )
    signer = sealer.signer

    class _Adapter(PyHankoSigner):
        async def async_sign_raw(
            self, data: bytes, digest_algorithm: str, dry_run: bool = False
        ) -> bytes:
            if digest_algorithm.lower() != "sha256":
                raise MalformedInput("seals sign with SHA-256")
            raw = signer.sign(data)
            if signer.alg == "ES256":
                # CMS wants ECDSA-Sig-Value (RFC 5753 §7.2), JWS gives r||s.
                return bytes(
                    encode_dss_signature(
                        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
                    )
                )
            return raw

    return _Adapter(
        signing_cert=certs[0],
        cert_registry=SimpleCertificateStore.from_certs(certs[1:]),  # type: ignore[no-untyped-call]
        signature_mechanism=mechanism,
        embed_roots=True,
    )


def _timestamper_base() -> type:
    from pyhanko.sign.timestamps import TimeStamper

    return TimeStamper


class InProcessTimeStamper(_timestamper_base()):  # type: ignore[misc]
    """pyHanko `TimeStamper` that asks our TSA directly, without HTTP (the same
    `respond` the `POST /tsa` endpoint calls)."""

    def __init__(self, tsa: TimestampAuthority) -> None:
        super().__init__(include_nonce=True)
        self._tsa = tsa

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return tsp.TimeStampResp.load(self._tsa.respond(req.dump()))


def seal(
    pdf: bytes,
    sealer: SealSigner,
    tsa: TimestampAuthority,
    *,
    now: datetime,
    placement: StampPlacement | None = None,
    reason: str | None = None,
    location: str | None = None,
    max_bytes: int = 32 * 1024 * 1024,
) -> bytes:
    """Seal a PDF: PAdES B-T with a visible stamp; returns the new PDF (an incremental
    update, so earlier signatures stay valid)."""
    from PIL import Image
    from pyhanko.pdf_utils import layout
    from pyhanko.pdf_utils.images import PdfImage
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields, signers
    from pyhanko.stamp import StaticStampStyle

    if len(pdf) > max_bytes:
        raise InputTooLarge(f"a PDF to seal is at most {max_bytes} bytes")
    place = placement or StampPlacement()
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        pages = int(writer.root["/Pages"]["/Count"])
    except (PdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise MalformedInput("the file is not a readable PDF", detail=repr(exc)) from exc
    page = place.page if place.page >= 0 else pages + place.page
    if not 0 <= page < pages:
        raise MalformedInput("the page to stamp does not exist")
    existing = sum(1 for _ in fields.enumerate_sig_fields(writer.prev))
    field_name = f"Seal{existing + 1}"
    image = Image.open(io.BytesIO(seal_png(sealer.department_name, sealer.purpose, size=360)))
    style = StaticStampStyle(
        background=PdfImage(image),
        border_width=0,
        background_opacity=1.0,
        background_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MID,
            margins=layout.Margins.uniform(0),  # type: ignore[no-untyped-call]
        ),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason or f"{sealer.department_name} {sealer.seal_name}",
        location=location,
        name=sealer.seal_name,
    )
    spec = fields.SigFieldSpec(
        sig_field_name=field_name,
        on_page=page,
        box=(
            round(place.x),
            round(place.y),
            round(place.x + place.size),
            round(place.y + place.size),
        ),
    )

    class _Signer(signers.PdfSigner):
        # pyHanko reads the wall clock for the /M entry; time is ours to give.
        def init_signing_session(self, pdf_out: Any, existing_fields_only: bool = False) -> Any:
            session = super().init_signing_session(pdf_out, existing_fields_only)
            session.system_time = now
            return session

    pdf_signer = _Signer(
        meta,
        signer=_pyhanko_signer(sealer),
        timestamper=InProcessTimeStamper(tsa),
        stamp_style=style,
        new_field_spec=spec,
    )
    out = pdf_signer.sign_pdf(writer)
    return bytes(out.getvalue())


# -- verification ---------------------------------------------------------------------


def _report(
    moment: datetime,
    sub: SubIndication | None,
    checks: list[Check],
    **extra: Any,
) -> VerificationReport:
    return VerificationReport(
        format="pdf",
        indication=sub.indication if sub else Indication.PASSED,
        sub_indication=sub,
        validation_time=moment,
        checks=tuple(checks),
        **extra,
    )


def _to_crypto(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _check_tst(
    signer_info: cms.SignerInfo,
    anchors: TrustAnchors,
    moment: datetime,
    policy: ValidationPolicy,
    crls: CrlIndex,
) -> tuple[datetime | None, str | None, list[Check], bool]:
    """Validate the signature timestamp (RFC 3161 token in the unsigned attribute
    id-aa-signatureTimeStampToken, RFC 3161 Appendix A). Returns (proof-of-existence
    time, TSA name, checks, tampered)."""
    from pyhanko.sign.validation.generic_cms import validate_sig_integrity

    checks: list[Check] = []
    unsigned = signer_info["unsigned_attrs"]
    tokens = []
    if unsigned.native is not None:
        for attr in unsigned:
            if attr["type"].native == "signature_time_stamp_token":
                tokens.extend(attr["values"])
    if not tokens:
        checks.append(Check("timestamp", False, "no signature timestamp (PAdES B-B)"))
        return None, None, checks, False
    signed_data = tokens[0]["content"]
    tst_info = signed_data["encap_content_info"]["content"].parsed
    imprint = tst_info["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm not in ("sha256", "sha384", "sha512"):
        checks.append(Check("timestamp", False, f"imprint hash {algorithm} not accepted"))
        return None, None, checks, False
    expected = hashlib.new(algorithm, signer_info["signature"].native).digest()
    if imprint["hashed_message"].native != expected:
        checks.append(Check("timestamp_imprint", False, "the timestamp covers another signature"))
        return None, None, checks, True
    ts_certs = [c.chosen for c in signed_data["certificates"] if c.name == "certificate"]
    ts_signer_info = signed_data["signer_infos"][0]
    sid = ts_signer_info["sid"].chosen
    tsa_cert = next(
        (
            c
            for c in ts_certs
            if isinstance(sid, cms.IssuerAndSerialNumber)
            and c.issuer == sid["issuer"]
            and c.serial_number == sid["serial_number"].native
        ),
        None,
    )
    if tsa_cert is None:
        checks.append(Check("timestamp", False, "the timestamp carries no TSA certificate"))
        return None, None, checks, False
    digest_algo = ts_signer_info["digest_algorithm"]["algorithm"].native
    digest = hashlib.new(
        digest_algo, signed_data["encap_content_info"]["content"].contents
    ).digest()
    intact, valid = validate_sig_integrity(ts_signer_info, tsa_cert, "tst_info", digest)
    if not (intact and valid):
        checks.append(Check("timestamp_signature", False, "the TSA's signature does not verify"))
        return None, None, checks, True
    tsa = _to_crypto(tsa_cert)
    facts = validate_path(
        tsa, [_to_crypto(c) for c in ts_certs], anchors, moment, usage="tsa", crl_index=crls
    )
    gen_time: datetime = tst_info["gen_time"].native
    sub, _ = conclude(facts, moment, poe=None, claimed=gen_time, policy=policy)
    if sub is not None:
        checks.append(
            Check("timestamp_authority", False, f"the TSA certificate is not trusted ({sub.value})")
        )
        return None, tsa.subject.rfc4514_string(), checks, False
    checks.append(
        Check("timestamp", True, f"{gen_time.isoformat()} by {tsa.subject.rfc4514_string()}")
    )
    return gen_time, tsa.subject.rfc4514_string(), checks, False


def _verify_one(
    embedded: Any,
    anchors: TrustAnchors,
    moment: datetime,
    policy: ValidationPolicy,
    crls: CrlIndex,
) -> VerificationReport:
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation.generic_cms import validate_sig_integrity
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    checks: list[Check] = [Check("format", True, f"signature field {embedded.field_name}")]
    signer_cert_asn1 = embedded.signer_cert
    leaf = _to_crypto(signer_cert_asn1)
    identity = seal_identity(leaf)
    claimed = embedded.self_reported_timestamp

    embedded.compute_integrity_info()
    coverage = embedded.coverage
    digest = embedded.compute_digest()
    intact, valid = validate_sig_integrity(embedded.signer_info, signer_cert_asn1, "data", digest)
    base: dict[str, Any] = {"seal": identity}
    if not intact:
        checks.append(Check("document_digest", False, "the signed bytes changed"))
        return _report(moment, SubIndication.HASH_FAILURE, checks, **base)
    checks.append(Check("document_digest", True, "the signed byte ranges are unchanged"))
    if not valid:
        checks.append(Check("signature", False, "the CMS signature does not verify"))
        return _report(moment, SubIndication.SIG_CRYPTO_FAILURE, checks, **base)
    checks.append(Check("signature", True, "CMS signature with the seal certificate's key"))
    ess_ok = _signing_certificate_bound(embedded.signer_info, signer_cert_asn1)
    checks.append(Check("signing_certificate_attribute", ess_ok, "ESSCertIDv2 (RFC 5035)"))
    if not ess_ok:
        return _report(moment, SubIndication.FORMAT_FAILURE, checks, **base)

    if coverage not in (SignatureCoverageLevel.ENTIRE_FILE, SignatureCoverageLevel.ENTIRE_REVISION):
        checks.append(Check("coverage", False, "the signature does not cover its revision"))
        return _report(moment, SubIndication.FORMAT_FAILURE, checks, **base)
    level = embedded.diff_result.modification_level if embedded.diff_result else None
    if coverage == SignatureCoverageLevel.ENTIRE_REVISION and (
        level is None or level > ModificationLevel.FORM_FILLING
    ):
        checks.append(Check("modifications", False, "the document was changed after it was sealed"))
        return _report(moment, SubIndication.SIG_CONSTRAINTS_FAILURE, checks, **base)
    checks.append(
        Check(
            "modifications",
            True,
            "covers the whole file"
            if coverage == SignatureCoverageLevel.ENTIRE_FILE
            else f"later revisions only add {level.name if level else 'nothing'}",
        )
    )

    poe, tsa_name, ts_checks, tampered = _check_tst(
        embedded.signer_info, anchors, moment, policy, crls
    )
    checks.extend(ts_checks)
    if tampered:
        return _report(moment, SubIndication.HASH_FAILURE, checks, **base)

    embedded_certs = [_to_crypto(c) for c in embedded.other_embedded_certs]
    facts = validate_path(leaf, embedded_certs, anchors, moment, usage="seal", crl_index=crls)
    checks.extend(facts.checks)
    sub, more = conclude(facts, moment, poe=poe, claimed=claimed, policy=policy)
    checks.extend(more)
    signing_time = poe or claimed
    return _report(
        moment,
        sub,
        checks,
        seal=identity,
        signing_time=signing_time,
        signing_time_source=("timestamp" if poe else "claimed") if signing_time else None,
        certificate_path=tuple(summarise_certificate(c) for c in facts.chain),
        timestamp_authority=tsa_name,
    )


def _signing_certificate_bound(signer_info: cms.SignerInfo, cert: asn1_x509.Certificate) -> bool:
    """PAdES requires the signing-certificate-v2 attribute naming the signer's certificate
    (EN 319 142-1 §6.3 via CAdES), so the certificate cannot be swapped."""
    for attr in signer_info["signed_attrs"]:
        if attr["type"].native == "signing_certificate_v2":
            ids = attr["values"][0]["certs"]
            for cert_id in ids:
                algo = cert_id["hash_algorithm"]["algorithm"].native
                if hashlib.new(algo, cert.dump()).digest() == cert_id["cert_hash"].native:
                    return True
            return False
    return False


def verify_all(
    pdf: bytes,
    anchors: TrustAnchors,
    moment: datetime,
    *,
    policy: ValidationPolicy | None = None,
) -> list[VerificationReport]:
    """One report per signature in the PDF, in the order they were added. Never raises
    for bad input: a malformed or hostile file gives a single FAILED report."""
    policy = policy or ValidationPolicy()
    if moment.tzinfo is None:
        raise ValueError("the validation moment must be timezone-aware")
    if not isinstance(pdf, bytes | bytearray):
        return [
            _report(moment, SubIndication.FORMAT_FAILURE, [Check("format", False, "not bytes")])
        ]
    if len(pdf) > policy.max_pdf_bytes:
        return [
            _report(
                moment,
                SubIndication.FORMAT_FAILURE,
                [Check("format", False, f"larger than {policy.max_pdf_bytes} bytes")],
            )
        ]
    if not looks_like_pdf(pdf):
        return [
            _report(moment, SubIndication.FORMAT_FAILURE, [Check("format", False, "not a PDF")])
        ]
    try:
        return _verify_all(bytes(pdf), anchors, moment, policy)
    except RecursionError:
        detail = "too deeply nested"
    except Exception as exc:  # hostile input can fail anywhere inside a PDF parser
        detail = f"unreadable PDF ({type(exc).__name__})"
    return [_report(moment, SubIndication.FORMAT_FAILURE, [Check("format", False, detail)])]


def _verify_all(
    pdf: bytes, anchors: TrustAnchors, moment: datetime, policy: ValidationPolicy
) -> list[VerificationReport]:
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    signatures = reader.embedded_regular_signatures
    if not signatures:
        return [
            _report(
                moment,
                SubIndication.SIGNED_DATA_NOT_FOUND,
                [Check("format", True, "a PDF"), Check("seal_present", False, "no signature")],
            )
        ]
    crls = CrlIndex(anchors.crls)
    reports = []
    for embedded in signatures:
        try:
            reports.append(_verify_one(embedded, anchors, moment, policy, crls))
        except Exception as exc:  # one broken signature must not hide the others
            reports.append(
                _report(
                    moment,
                    SubIndication.FORMAT_FAILURE,
                    [Check("format", False, f"unreadable signature ({type(exc).__name__})")],
                )
            )
    return reports


def verify(
    pdf: bytes,
    anchors: TrustAnchors,
    moment: datetime,
    *,
    policy: ValidationPolicy | None = None,
) -> VerificationReport:
    """The report of the PDF's last seal (the one covering the most). A PDF with several
    seals passes only if each does: the first failing report is returned."""
    reports = verify_all(pdf, anchors, moment, policy=policy)
    failing = [r for r in reports if not r.passed]
    return failing[0] if failing else reports[-1]
