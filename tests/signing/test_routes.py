"""HTTP: /api/v1/verify (single, batch, PDF, hostile input), /api/v1/trust (usable by an
offline verifier), /pki/crl/{ca}.crl and /tsa."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import pytest
from asn1crypto import algos, tsp
from cryptography import x509
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from keys.kek import KeyEncryptionKeys
from kit.clock import FrozenClock
from kit.db import transaction
from signing import jws_seal, pades, seals
from signing.trust import TrustAnchors
from tests.signing.province import Province, blank_pdf
from web import signing_routes
from web.signing_routes import router


@dataclass
class _Settings:
    issuer: str = "https://tongban.example.gov.cn"
    province_name: str = "示范省"


@dataclass
class _Runtime:
    """The slice of `web.runtime.Runtime` the routes use (a real database)."""

    factory: sessionmaker[Session]
    keks: KeyEncryptionKeys
    clock: FrozenClock
    settings: Any


@pytest.fixture(scope="module")
def client(province: Province) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    app.state.runtime = _Runtime(
        province.factory, province.pki.keys.keks, province.clock, _Settings()
    )
    return TestClient(app)


@pytest.fixture(scope="module")
def token(province: Province) -> str:
    seal = province.new_seal()
    return jws_seal.seal({"a": 1}, province.sealer(seal.id), now=province.clock.now())


def test_verify_single_batch_and_raw(client: TestClient, token: str) -> None:
    r = client.post("/api/v1/verify", json={"jws": token})
    assert r.status_code == 200 and r.json()["indication"] == "PASSED"
    assert r.json()["document"] == {"a": 1}
    assert r.headers["cache-control"] == "no-store"
    r = client.post("/api/v1/verify", content=token, headers={"content-type": "application/jose"})
    assert r.json()["indication"] == "PASSED"
    r = client.post("/api/v1/verify", json={"jws": [token, token, "x.y.z"]})
    body = r.json()
    assert body["count"] == 3 and body["passed"] == 2
    assert body["reports"][2]["sub_indication"] == "FORMAT_FAILURE"


def test_verify_pdf_raw_and_multipart(client: TestClient, province: Province) -> None:
    seal = province.new_seal()
    pdf = pades.seal(
        blank_pdf(), province.sealer(seal.id), province.tsa(), now=province.clock.now()
    )
    r = client.post("/api/v1/verify", content=pdf, headers={"content-type": "application/pdf"})
    assert r.status_code == 200 and r.json()["indication"] == "PASSED", r.json()
    r = client.post("/api/v1/verify", files={"file": ("s.pdf", pdf, "application/pdf")})
    assert r.json()["indication"] == "PASSED"
    r = client.post(
        "/api/v1/verify", content=pdf[:3000], headers={"content-type": "application/pdf"}
    )
    assert r.status_code == 200 and r.json()["indication"] != "PASSED"


def test_bad_requests_are_problem_details(client: TestClient, token: str) -> None:
    r = client.post("/api/v1/verify", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert client.post("/api/v1/verify", json={"nothing": 1}).status_code == 400
    assert client.post("/api/v1/verify", json=[1]).status_code == 400
    r = client.post("/api/v1/verify", content=b"x", headers={"content-type": "image/gif"})
    assert r.status_code == 415
    r = client.post("/api/v1/verify", json={"jws": [token] * 1001})
    assert r.status_code == 413
    big = b"%PDF-1.7\n" + b"0" * (33 * 1024 * 1024)
    r = client.post("/api/v1/verify", content=big, headers={"content-type": "application/pdf"})
    assert r.status_code == 413
    r = client.post("/api/v1/verify", json={"jws": "eyJhbGciOiJub25lIn0.e30."})
    assert r.status_code == 200 and r.json()["indication"] == "FAILED"


def test_trust_bundle_serves_an_offline_verifier(
    client: TestClient, token: str, province: Province
) -> None:
    r = client.get("/api/v1/trust")
    assert r.status_code == 200
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    bundle = r.json()
    assert [c["ca"] for c in bundle["crls"]] == ["root", "issuing"]
    assert bundle["crls"][1]["url"].endswith("/pki/crl/issuing.crl")
    assert bundle["jwks"]["keys"] and all("d" not in k for k in bundle["jwks"]["keys"])
    anchors = TrustAnchors.from_bundle(bundle)
    assert jws_seal.verify(token, anchors, province.clock.now()).passed
    again = client.get("/api/v1/trust", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    pem = client.get("/api/v1/trust?format=pem")
    assert len(x509.load_pem_x509_certificates(pem.content)) == 2


def test_crl_endpoint(client: TestClient, province: Province) -> None:
    r = client.get("/pki/crl/issuing.crl")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    assert crl.is_signature_valid(province.issuing().public_key())  # type: ignore[arg-type]
    assert client.get("/pki/crl/nope.crl").status_code == 404


def test_tsa_endpoint(client: TestClient) -> None:
    req = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": hashlib.sha256(b"x").digest(),
            },
            "cert_req": True,
        }
    ).dump()
    r = client.post("/tsa", content=req, headers={"content-type": "application/timestamp-query"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/timestamp-reply"
    assert tsp.TimeStampResp.load(r.content)["status"]["status"].native == "granted"
    assert (
        client.post("/tsa", content=req, headers={"content-type": "text/plain"}).status_code == 415
    )
    r = client.post(
        "/tsa", content=b"0" * 5000, headers={"content-type": "application/timestamp-query"}
    )
    assert r.status_code == 413


def _verify_token(client: TestClient, token: str) -> dict[str, Any]:
    r = client.post("/api/v1/verify", content=token, headers={"content-type": "application/jose"})
    assert r.status_code == 200
    return dict(r.json())


def test_revocation_in_this_process_shows_at_once(
    client: TestClient, province: Province, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trust anchors are kept between requests; what the admin API calls after a
    change (`invalidate_trust`) makes the next verification read them again, however long
    the recheck interval."""
    monkeypatch.setattr(signing_routes, "TRUST_RECHECK_SECONDS", 3600.0)
    seal = province.new_seal()
    token = jws_seal.seal({"a": 2}, province.sealer(seal.id), now=province.clock.now())
    assert _verify_token(client, token)["indication"] == "PASSED"
    batch = client.post("/api/v1/verify", json={"jws": [token, token]}).json()
    assert batch["passed"] == 2
    with transaction(province.factory) as s:
        seals.revoke_seal(s, province.clock, province.pki, seal.id, reason="key_compromise")
    client.app.state.signing.invalidate_trust()  # what the admin API does after a change
    report = _verify_token(client, token)
    assert report["sub_indication"] == "REVOKED_NO_POE", report
    batch = client.post("/api/v1/verify", json={"jws": [token, token]}).json()
    assert batch["passed"] == 0
    assert {r["sub_indication"] for r in batch["reports"]} == {"REVOKED_NO_POE"}


def test_revocation_by_another_process_shows_after_the_recheck_interval(
    client: TestClient, province: Province, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change this process did not make (another replica, the CLI) is seen once the
    CRL numbers are read again, at most `TRUST_RECHECK_SECONDS` later."""
    monkeypatch.setattr(signing_routes, "TRUST_RECHECK_SECONDS", 0.2)
    seal = province.new_seal()
    token = jws_seal.seal({"a": 3}, province.sealer(seal.id), now=province.clock.now())
    assert _verify_token(client, token)["indication"] == "PASSED"
    with transaction(province.factory) as s:
        seals.suspend_seal(s, province.clock, province.pki, seal.id, reason="investigation")
    time.sleep(0.3)
    assert _verify_token(client, token)["sub_indication"] == "TRY_LATER"
    with transaction(province.factory) as s:
        seals.reinstate_seal(s, province.clock, province.pki, seal.id)
    time.sleep(0.3)
    assert _verify_token(client, token)["indication"] == "PASSED"
