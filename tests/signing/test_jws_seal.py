"""Sealed JSON (compact JWS over RFC 8785 JSON): independent verifiers, and one negative
test per EN 319 102-1 sub-indication the JWS path can produce (issue 3)."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import socket
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification as xv

from keys.signer import SoftwareSigner
from kit.canonical import CanonicalisationError, canonical_json
from kit.db import transaction
from kit.ids import b64url, b64url_decode
from signing import jws_seal, seals
from signing.errors import InputTooLarge
from signing.report import Indication, ReportEncoder, SubIndication
from signing.seals import SealSigner
from signing.trust import TrustAnchors
from tests.signing.province import Province

DOC = {"licence": "结婚证", "holder": "张三", "issued": "2026-03-01", "n": [1, 2.5, None]}


def _parts(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), b64url_decode(p), b64url_decode(s)


def _forge(sealer: SealSigner, header: dict[str, Any], payload: bytes) -> str:
    """Sign arbitrary header/payload with the seal's key (what a misbehaving holder of
    the key could do)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
    return f"{signing_input}.{b64url(sealer.signer.sign(signing_input.encode()))}"


@pytest.fixture(scope="module")
def seal_id(province: Province) -> str:
    return province.new_seal().id


@pytest.fixture(scope="module")
def token(province: Province, seal_id: str) -> str:
    return jws_seal.seal(DOC, province.sealer(seal_id), now=province.clock.now())


def test_seal_and_verify_passes_with_document_and_seal(province: Province, token: str) -> None:
    report = jws_seal.verify(token, province.anchors(), province.clock.now())
    assert report.indication is Indication.PASSED, report.to_dict()
    assert report.sub_indication is None
    assert report.document == DOC
    assert report.seal is not None
    assert report.seal.department_uscc == "91110108MA01AB2C3T"
    assert report.seal.department_name == "示范市民政局"
    assert report.seal.seal_type == "业务专用章"
    assert report.signing_time == province.clock.now().replace(microsecond=0)
    assert report.signing_time_source == "claimed"
    assert len(report.certificate_path) == 3
    assert all(c.passed for c in report.checks)
    json.dumps(report.to_dict(), ensure_ascii=False)  # serialisable as it is


def test_header_is_explicit(province: Province, token: str, seal_id: str) -> None:
    header, payload, signature = _parts(token)
    assert header["alg"] == "ES256"
    assert header["typ"] == jws_seal.SEAL_TYP
    # seal and issuing CA; the root comes from the verifier's trust anchors, never the token
    assert len(header["x5c"]) == 2
    certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    assert province.root() not in certs
    assert header["kid"] == province.sealer(seal_id).kid
    assert header["sigT"].endswith("Z")
    assert payload == canonical_json(DOC)
    assert len(signature) == 64


def test_second_jose_library_and_x509_path_validation_agree(province: Province, token: str) -> None:
    """jwcrypto verifies the signature with the key of x5c[0]; cryptography's RFC 5280
    verifier builds the path from x5c to our root."""
    jwk = pytest.importorskip("jwcrypto.jwk")
    jws = pytest.importorskip("jwcrypto.jws")
    header, _, _ = _parts(token)
    certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    key = jwk.JWK.from_pem(
        certs[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(key, alg="ES256")
    assert json.loads(obj.payload) == DOC

    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store([province.root()]))
        .time(province.clock.now())
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=xv.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    chain = verifier.verify(certs[0], certs[1:2]).chain
    assert chain[-1] == province.root()


def test_ps256_seal(province: Province) -> None:
    seal = province.new_seal(alg="PS256", name="示范市民政局合同专用章", seal_type="合同专用章")
    token = jws_seal.seal(DOC, province.sealer(seal.id), now=province.clock.now())
    assert _parts(token)[0]["alg"] == "PS256"
    report = jws_seal.verify(token, province.anchors(), province.clock.now())
    assert report.passed, report.to_dict()
    jwk = pytest.importorskip("jwcrypto.jwk")
    jws = pytest.importorskip("jwcrypto.jws")
    cert = x509.load_der_x509_certificate(base64.b64decode(_parts(token)[0]["x5c"][0]))
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(
        jwk.JWK.from_pem(
            cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
        alg="PS256",
    )


# -- FAILED -------------------------------------------------------------------------------


def test_tampered_payload_byte_is_sig_crypto_failure(province: Province, token: str) -> None:
    h, p, s = token.split(".")
    raw = bytearray(b64url_decode(p))
    raw[5] ^= 0x01
    report = jws_seal.verify(
        f"{h}.{b64url(bytes(raw))}.{s}", province.anchors(), province.clock.now()
    )
    assert report.indication is Indication.FAILED
    assert report.sub_indication is SubIndication.SIG_CRYPTO_FAILURE
    assert report.document is None


def test_foreign_key_is_sig_crypto_failure(province: Province, token: str) -> None:
    _parts(token)  # well-formed
    stranger = SoftwareSigner("x", "ES256", ec.generate_private_key(ec.SECP256R1()))
    signing_input = ".".join(token.split(".")[:2])
    forged = f"{signing_input}.{b64url(stranger.sign(signing_input.encode()))}"
    report = jws_seal.verify(forged, province.anchors(), province.clock.now())
    assert report.sub_indication is SubIndication.SIG_CRYPTO_FAILURE


def test_untrusted_root_is_no_certificate_chain(
    province: Province, foreign_province: Province
) -> None:
    seal = foreign_province.new_seal()
    token = jws_seal.seal(DOC, foreign_province.sealer(seal.id), now=province.clock.now())
    report = jws_seal.verify(token, province.anchors(), province.clock.now())
    assert report.indication is Indication.INDETERMINATE
    assert report.sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    # and the foreign province's own anchors accept it
    assert jws_seal.verify(token, foreign_province.anchors(), province.clock.now()).passed


def test_revoked_seal(province: Province) -> None:
    """Revocation reflects in verification: sealed before → REVOKED_NO_POE (a JWS has no
    timestamp to prove it); claimed after → REVOKED."""
    seal = province.new_seal()
    sealer = province.sealer(seal.id)
    before = jws_seal.seal(DOC, sealer, now=province.clock.now())
    revoked_at = province.clock.now() + timedelta(hours=1)
    with transaction(province.factory) as s:
        province.pki.revoke(s, seal.certificate_serial, revoked_at, reason="key_compromise")
    after = jws_seal.seal(DOC, sealer, now=revoked_at + timedelta(minutes=5))
    moment = revoked_at + timedelta(hours=1)
    anchors = province.anchors(moment)
    r1 = jws_seal.verify(before, anchors, moment)
    assert r1.indication is Indication.INDETERMINATE
    assert r1.sub_indication is SubIndication.REVOKED_NO_POE
    r2 = jws_seal.verify(after, anchors, moment)
    assert r2.indication is Indication.FAILED
    assert r2.sub_indication is SubIndication.REVOKED


def test_seal_used_outside_validity(province: Province) -> None:
    """A signer who claims a signing time outside the certificate's validity FAILS:
    EXPIRED after notAfter, NOT_YET_VALID before notBefore."""
    seal = province.new_seal(lifetime=timedelta(days=30))
    sealer = province.force_sealer(seal.id)
    late = jws_seal.seal(DOC, sealer, now=province.clock.now() + timedelta(days=40))
    early = jws_seal.seal(DOC, sealer, now=province.clock.now() - timedelta(days=1))
    anchors = province.anchors()
    assert jws_seal.verify(late, anchors, province.clock.now()).sub_indication is (
        SubIndication.EXPIRED
    )
    assert jws_seal.verify(early, anchors, province.clock.now()).sub_indication is (
        SubIndication.NOT_YET_VALID
    )


def test_alg_none_and_unknown_algorithms(province: Province, token: str) -> None:
    header, payload, _ = _parts(token)
    for alg, expected in [
        ("none", SubIndication.FORMAT_FAILURE),
        ("HS256", SubIndication.CRYPTO_CONSTRAINTS_FAILURE),
        ("RS256", SubIndication.CRYPTO_CONSTRAINTS_FAILURE),
        ("ES512", SubIndication.CRYPTO_CONSTRAINTS_FAILURE),
    ]:
        forged_header = dict(header, alg=alg)
        forged = f"{b64url(json.dumps(forged_header).encode())}.{b64url(payload)}."
        report = jws_seal.verify(forged, province.anchors(), province.clock.now())
        assert report.sub_indication is expected, alg
        assert not report.passed


def test_alg_confusion_es256_header_with_ps256_key_fails(province: Province, token: str) -> None:
    seal = province.new_seal(alg="PS256")
    sealer = province.sealer(seal.id)
    header, payload, _ = _parts(jws_seal.seal(DOC, sealer, now=province.clock.now()))
    forged = _forge(sealer, dict(header, alg="ES256"), payload)
    report = jws_seal.verify(forged, province.anchors(), province.clock.now())
    assert report.sub_indication is SubIndication.SIG_CRYPTO_FAILURE


def test_jku_x5u_and_jwk_are_never_fetched_nor_trusted(
    province: Province, seal_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the verifier opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    sealer = province.sealer(seal_id)
    header, payload, _ = _parts(jws_seal.seal(DOC, sealer, now=province.clock.now()))
    hostile = dict(
        header,
        jku="https://attacker.example/jwks.json",
        x5u="https://attacker.example/chain.pem",
        jwk={"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    )
    report = jws_seal.verify(
        _forge(sealer, hostile, payload), province.anchors(), province.clock.now()
    )
    assert report.passed
    assert any(c.name == "ignored_headers" for c in report.checks)
    # the attacker's own key named by jwk/jku does not help: without x5c, nothing verifies
    del hostile["x5c"], hostile["kid"]
    stranger = SoftwareSigner("x", "ES256", ec.generate_private_key(ec.SECP256R1()))
    si = f"{b64url(json.dumps(hostile).encode())}.{b64url(payload)}"
    forged = f"{si}.{b64url(stranger.sign(si.encode()))}"
    assert jws_seal.verify(forged, province.anchors(), province.clock.now()).sub_indication is (
        SubIndication.NO_SIGNING_CERTIFICATE_FOUND
    )


def test_wrong_typ_crit_kid_and_non_canonical_payload(province: Province, seal_id: str) -> None:
    sealer = province.sealer(seal_id)
    header, payload, _ = _parts(jws_seal.seal(DOC, sealer, now=province.clock.now()))
    anchors, now = province.anchors(), province.clock.now()
    cases = [
        (dict(header, typ="at+jwt"), payload),
        (dict(header, crit=["exp"], exp=1), payload),
        (dict(header, kid="someone-else"), payload),
        (header, json.dumps(DOC, ensure_ascii=False, indent=1).encode()),
    ]
    for forged_header, body in cases:
        report = jws_seal.verify(_forge(sealer, forged_header, body), anchors, now)
        assert report.sub_indication is SubIndication.FORMAT_FAILURE, forged_header
        assert report.indication is Indication.FAILED


# -- INDETERMINATE ------------------------------------------------------------------------


def test_expired_certificate_without_poe(province: Province) -> None:
    seal = province.new_seal(lifetime=timedelta(days=30))
    token = jws_seal.seal(DOC, province.sealer(seal.id), now=province.clock.now())
    moment = province.clock.now() + timedelta(days=60)
    report = jws_seal.verify(token, province.anchors(moment), moment)
    assert report.indication is Indication.INDETERMINATE
    assert report.sub_indication is SubIndication.OUT_OF_BOUNDS_NO_POE


def test_suspended_seal_is_try_later_and_reinstated_passes(province: Province) -> None:
    seal = province.new_seal()
    token = jws_seal.seal(DOC, province.sealer(seal.id), now=province.clock.now())
    with transaction(province.factory) as s:
        seals.suspend_seal(s, province.clock, province.pki, seal.id, reason="investigation")
    report = jws_seal.verify(token, province.anchors(), province.clock.now())
    assert report.sub_indication is SubIndication.TRY_LATER
    with transaction(province.factory) as s:
        seals.reinstate_seal(s, province.clock, province.pki, seal.id)
    assert jws_seal.verify(token, province.anchors(), province.clock.now()).passed


def test_missing_crl_is_try_later(province: Province, token: str) -> None:
    anchors = TrustAnchors(roots=(province.root(),))
    report = jws_seal.verify(token, anchors, province.clock.now())
    assert report.sub_indication is SubIndication.TRY_LATER
    stale_moment = province.clock.now() + timedelta(days=30)  # CRLs issued now are stale then
    report = jws_seal.verify(token, province.anchors(), stale_moment)
    assert report.sub_indication is SubIndication.TRY_LATER


def test_missing_x5c_is_no_signing_certificate(province: Province, seal_id: str) -> None:
    sealer = province.sealer(seal_id)
    header, payload, _ = _parts(jws_seal.seal(DOC, sealer, now=province.clock.now()))
    del header["x5c"]
    report = jws_seal.verify(
        _forge(sealer, header, payload), province.anchors(), province.clock.now()
    )
    assert report.sub_indication is SubIndication.NO_SIGNING_CERTIFICATE_FOUND


# -- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
        "e30.e30.AA",
        "W10.e30.AA",  # header is a JSON array
        "eyJhbGciOiJFUzI1NiIsImFsZyI6Im5vbmUifQ.e30.AA",  # duplicate alg
        "x" * 300_000,
        "é.é.é",
        None,
        42,
        b"\xff\xfe.a.b",
        ["a", "b"],
    ],
)
def test_malformed_input_gives_a_report_never_an_exception(province: Province, bad: object) -> None:
    report = jws_seal.verify(bad, province.anchors(), province.clock.now())
    assert not report.passed
    assert report.indication in (Indication.FAILED, Indication.INDETERMINATE)
    assert report.document is None


def test_hostile_x5c(province: Province, seal_id: str) -> None:
    sealer = province.sealer(seal_id)
    header, payload, _ = _parts(jws_seal.seal(DOC, sealer, now=province.clock.now()))
    for x5c in (["not base64!"], [base64.b64encode(b"junk").decode()], "string", [1], ["A"] * 50):
        report = jws_seal.verify(
            _forge(sealer, dict(header, x5c=x5c), payload), province.anchors(), province.clock.now()
        )
        assert report.sub_indication is SubIndication.FORMAT_FAILURE, x5c


def test_batch_verification(province: Province, seal_id: str, token: str) -> None:
    sealer = province.sealer(seal_id)
    tokens = [jws_seal.seal({"i": i}, sealer, now=province.clock.now()) for i in range(20)]
    tokens.append("garbage")
    reports = jws_seal.verify_batch(tokens, province.anchors(), province.clock.now())
    assert [r.passed for r in reports] == [True] * 20 + [False]
    assert [r.document for r in reports[:3]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    with pytest.raises(InputTooLarge):
        jws_seal.verify_batch([token] * 1001, province.anchors(), province.clock.now())


def test_report_is_frozen(province: Province, token: str) -> None:
    report = jws_seal.verify(token, province.anchors(), province.clock.now())
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.indication = Indication.FAILED  # type: ignore[misc]


def test_sealing_refuses_non_json_and_huge_documents(province: Province, seal_id: str) -> None:
    sealer = province.sealer(seal_id)
    with pytest.raises(CanonicalisationError):
        jws_seal.seal({"x": float("nan")}, sealer, now=province.clock.now())
    with pytest.raises(InputTooLarge):
        jws_seal.seal({"x": "a" * 200_000}, sealer, now=province.clock.now())


# -- what is shared across verifiers (issue 3: performance) -------------------------------


def test_revocation_after_a_passed_verification_is_seen(province: Province) -> None:
    """Paths are shared across verifiers of the same anchors, and a clean result is kept
    for later moments; a revocation publishes a new CRL, hence new anchors, and the next
    verification reports it."""
    seal = province.new_seal()
    token = jws_seal.seal(DOC, province.sealer(seal.id), now=province.clock.now())
    moment = province.clock.now() + timedelta(minutes=1)
    before = province.anchors()
    assert jws_seal.verify(token, before, moment).passed
    assert jws_seal.JwsVerifier(before, moment).verify_many([token])[0].passed
    with transaction(province.factory) as s:
        seals.revoke_seal(s, province.clock, province.pki, seal.id, reason="key_compromise")
    after = province.anchors()
    assert after.fingerprint != before.fingerprint
    report = jws_seal.verify(token, after, moment)
    assert report.sub_indication is SubIndication.REVOKED_NO_POE
    assert any(c.name == "revocation_status" and not c.passed for c in report.checks)


def test_a_kept_result_never_outlives_the_moment_it_holds_for(province: Province) -> None:
    """With the same anchors, a seal that passed is judged again once its certificate
    expires or a CRL passes its nextUpdate, and at an earlier moment."""
    seal = province.new_seal(lifetime=timedelta(days=3))
    token = jws_seal.seal(DOC, province.sealer(seal.id), now=province.clock.now())
    anchors = province.anchors()
    now = province.clock.now()
    assert jws_seal.verify(token, anchors, now + timedelta(hours=1)).passed
    assert jws_seal.verify(token, anchors, now + timedelta(days=2)).passed
    expired = jws_seal.verify(token, anchors, now + timedelta(days=4))
    assert expired.sub_indication is SubIndication.OUT_OF_BOUNDS_NO_POE
    earlier = jws_seal.verify(token, anchors, now - timedelta(days=1))
    assert earlier.sub_indication is SubIndication.OUT_OF_BOUNDS_NO_POE

    long_seal = province.new_seal()
    token = jws_seal.seal(DOC, province.sealer(long_seal.id), now=now)
    assert jws_seal.verify(token, anchors, now + timedelta(hours=1)).passed
    stale = jws_seal.verify(token, anchors, now + timedelta(days=8))  # issuing CRL: 7 days
    assert stale.sub_indication is SubIndication.TRY_LATER


def test_a_cert_trusted_as_root_is_not_trusted_as_intermediate(province: Province) -> None:
    """Shared work is keyed by the anchors' fingerprint, which tells roots from
    intermediates."""
    root, issuing = province.root(), province.issuing()
    as_roots = TrustAnchors(roots=(root, issuing))
    as_intermediate = TrustAnchors(roots=(root,), intermediates=(issuing,))
    assert as_roots.fingerprint != as_intermediate.fingerprint
    assert (
        TrustAnchors(roots=(issuing,), intermediates=(root,)).fingerprint
        != TrustAnchors(roots=(root,), intermediates=(issuing,)).fingerprint
    )


def _header_bytes(token: str) -> bytes:
    return b64url_decode(token.split(".")[0])


def test_known_header_tail_with_a_changed_head_is_judged_exactly(
    province: Province, seal_id: str
) -> None:
    """A header whose base64url tail (the x5c) was seen before is parsed from its head
    only; a head that repeats `x5c` or names another `kid` is refused as before."""
    sealer = province.sealer(seal_id)
    token = jws_seal.seal(DOC, sealer, now=province.clock.now())
    anchors, now = province.anchors(), province.clock.now()
    assert jws_seal.verify(token, anchors, now).passed  # the tail is known now
    header = _header_bytes(token)
    kid_member = f'"kid":"{sealer.kid}",'.encode()
    assert kid_member in header[:144]
    _, payload_b64, signature_b64 = token.split(".")

    def with_head(member: bytes) -> str:
        assert len(member) == len(kid_member)  # the tail stays byte for byte the same
        forged = b64url(header.replace(kid_member, member))
        assert forged[192:] == token.split(".")[0][192:]
        return f"{forged}.{payload_b64}.{signature_b64}"

    duplicate = jws_seal.verify(with_head(b'"x5c":"' + b"A" * 43 + b'",'), anchors, now)
    assert duplicate.sub_indication is SubIndication.FORMAT_FAILURE
    assert "duplicate member name 'x5c'" in duplicate.checks[-1].detail
    wrong_kid = jws_seal.verify(with_head(b'"kid":"' + b"B" * 43 + b'",'), anchors, now)
    assert wrong_kid.sub_indication is SubIndication.FORMAT_FAILURE
    assert wrong_kid.checks[-1].name == "key_identifier"
    unterminated = jws_seal.verify(with_head(b'"kid":"' + b"C" * 44 + b","), anchors, now)
    assert unterminated.sub_indication is SubIndication.FORMAT_FAILURE
    no_kid = jws_seal.verify(with_head(b'"zzz":"' + sealer.kid.encode() + b'",'), anchors, now)
    # parsed like any header, without kid: only the signature no longer matches
    assert no_kid.sub_indication is SubIndication.SIG_CRYPTO_FAILURE


def test_reports_render_as_their_to_dict(province: Province, seal_id: str, token: str) -> None:
    """`ReportEncoder` writes what `json.dumps(report.to_dict())` writes, byte for byte,
    for PASSED, FAILED and INDETERMINATE reports, from fresh and remembered fragments."""
    sealer = province.sealer(seal_id)
    tokens = [jws_seal.seal({"i": i, "x": 0.5}, sealer, now=province.clock.now()) for i in range(3)]
    h, _, s = token.split(".")
    tampered = f"{h}.{b64url(b'{}')}.{s}"
    untrusted = TrustAnchors(roots=(province.issuing(),))
    encoder = ReportEncoder()
    for anchors in (province.anchors(), untrusted, province.anchors()):
        reports = jws_seal.verify_batch(
            [*tokens, tampered, "garbage", token], anchors, province.clock.now()
        )
        expected = {
            "count": len(reports),
            "passed": sum(r.passed for r in reports),
            "reports": [r.to_dict() for r in reports],
        }
        dumped = json.dumps(expected, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        assert encoder.encode_batch(reports) == dumped.encode()
        for report in reports:
            assert (
                encoder.encode(report)
                == json.dumps(report.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
            )
    # A document is written as it was sealed (RFC 8785): the same JSON value, though
    # ECMAScript spells some numbers unlike Python (1e-7, not 1e-07).
    small = jws_seal.seal({"small": 1e-7}, sealer, now=province.clock.now())
    report = jws_seal.verify_batch([small], province.anchors(), province.clock.now())[0]
    assert report.passed and b'"document":{"small":1e-7}' in encoder.encode(report)
    assert json.loads(encoder.encode(report)) == report.to_dict()


def test_known_header_tail_after_a_long_head(province: Province, seal_id: str) -> None:
    """The `x5c` member may start beyond the split (a long member before it): the bytes
    between are kept with the tail, and a second token of that shape reads the same."""
    sealer = province.sealer(seal_id)
    header, payload, _ = _parts(jws_seal.seal(DOC, sealer, now=province.clock.now()))
    anchors, now = province.anchors(), province.clock.now()
    for second in range(3):
        long_head = dict(header, sigT=f"2026-03-01T09:00:0{second}Z", jku="https://x/" + "j" * 300)
        signing_input = f"{b64url(canonical_json(long_head))}.{b64url(payload)}"
        forged = f"{signing_input}.{b64url(sealer.signer.sign(signing_input.encode()))}"
        assert len(forged.split(".")[0]) > 600
        assert _header_bytes(forged).index(b',"x5c":') > 144  # the member starts in the tail
        report = jws_seal.verify(forged, anchors, now)
        assert report.passed, report.to_dict()
        assert report.signing_time is not None and report.signing_time.second == second
        assert any(c.name == "ignored_headers" for c in report.checks)


def test_es256_signature_to_der_matches_cryptography() -> None:
    """R || S to DER, including leading zero bytes and high bits (RFC 3279 §2.2.3)."""
    cases = [bytes(64), b"\x80" * 64, b"\0" * 31 + b"\x01" + b"\0" * 31 + b"\xff"]
    cases += [secrets.token_bytes(64) for _ in range(2000)]
    cases += [b"\0" * n + secrets.token_bytes(64 - n) for n in range(1, 40)]
    for signature in cases:
        expected = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        assert jws_seal._der_signature(signature) == expected, signature.hex()
