"""The province's RFC 3161 timestamp authority, checked by OpenSSL (`openssl ts -verify`)
and by its answers to bad requests (RFC 3161 §2.4.2)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import algos, tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signing.tsa import BASELINE_TSA_POLICY, TimestampAuthority
from tests.signing.province import Province


@pytest.fixture(scope="module")
def tsa(province: Province) -> TimestampAuthority:
    return province.tsa()


def _request(digest: bytes, algorithm: str = "sha256", **extra: object) -> bytes:
    req: dict[str, object] = {
        "version": "v1",
        "message_imprint": tsp.MessageImprint(
            {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
                "hashed_message": digest,
            }
        ),
        "cert_req": True,
    }
    req.update(extra)
    return bytes(tsp.TimeStampReq(req).dump())


def _status(response: bytes) -> tsp.PKIStatusInfo:
    # a rejection has no token, which asn1crypto's TimeStampResp cannot parse: read the
    # first element of the SEQUENCE
    return tsp.PKIStatusInfo.load(
        response[2:] if response[1] < 0x80 else response[2 + (response[1] & 0x7F) :]
    )


def test_openssl_verifies_our_token(
    province: Province, tsa: TimestampAuthority, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required in CI")
        pytest.skip("no openssl")
    data = tmp_path / "data.bin"
    data.write_bytes("统一身份认证".encode())
    query = tmp_path / "q.tsq"
    subprocess.run(
        [openssl, "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query)],
        check=True,
        capture_output=True,
    )
    reply = tmp_path / "r.tsr"
    reply.write_bytes(tsa.respond(query.read_bytes()))
    root = tmp_path / "root.pem"
    root.write_bytes(province.root().public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        [openssl, "ts", "-verify", "-data", str(data), "-in", str(reply), "-CAfile", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Verification: OK" in result.stdout, result.stderr
    text = subprocess.run(
        [openssl, "ts", "-reply", "-in", str(reply), "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert BASELINE_TSA_POLICY in text


def test_token_content(province: Province, tsa: TimestampAuthority) -> None:
    digest = hashlib.sha256(b"x").digest()
    response = tsp.TimeStampResp.load(tsa.respond(_request(digest, nonce=12345)))
    assert response["status"]["status"].native == "granted"
    signed = response["time_stamp_token"]["content"]
    info = signed["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest
    assert info["nonce"].native == 12345
    assert info["gen_time"].native == province.clock.now().replace(microsecond=0)
    assert info["policy"].native == BASELINE_TSA_POLICY
    [cert] = signed["certificates"]
    tsa_cert = x509.load_der_x509_certificate(cert.chosen.dump())
    eku = tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]


def test_no_certificate_unless_requested(tsa: TimestampAuthority) -> None:
    digest = hashlib.sha256(b"x").digest()
    response = tsp.TimeStampResp.load(tsa.respond(_request(digest, cert_req=False)))
    assert not response["time_stamp_token"]["content"]["certificates"]


@pytest.mark.parametrize(
    ("request_der", "fail"),
    [
        (b"", "bad_data_format"),
        (b"garbage", "bad_data_format"),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (b"\x30" + b"\x82\xff\xff" + b"\x00" * 10, "bad_data_format"),
        (b"\x00" * 5000, "bad_request"),
        (_request(hashlib.sha1(b"x").digest(), "sha1"), "bad_alg"),
        (_request(hashlib.md5(b"x").digest(), "md5"), "bad_alg"),
        (_request(b"short"), "bad_data_format"),
        (_request(hashlib.sha256(b"x").digest(), req_policy="1.2.3.4"), "unaccepted_policy"),
    ],
)
def test_bad_requests_are_rejected_not_raised(
    tsa: TimestampAuthority, request_der: bytes, fail: str
) -> None:
    status = _status(tsa.respond(request_der))
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {fail}
