"""HTTP: `POST /api/v1/seal` and the admin seal API (`/admin/v1/seals`, `/admin/v1/pki`),
over real HTTP against `tongban serve` on SQLite and PostgreSQL (issue 3).

Sealed output is checked by our own `POST /api/v1/verify` and by independent verifiers
(jwcrypto with `cryptography`'s X.509 path validation; pyHanko's validator) that get only
what `GET /api/v1/trust` publishes."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.dom import minidom

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification as xv
from sqlalchemy import select

from audit.models import AuditEvent, PendingEvent
from kit.identifiers import organisation_code_check_char, uscc_check_char
from signing import jws_seal
from signing.trust import TrustAnchors
from tests.signing.province import blank_pdf
from tests.web.live import BIN, LiveServer
from web.signing_routes import TRUST_RECHECK_SECONDS

DOC = {"licence": "结婚证", "holder": "张三", "issued": "2026-03-01", "n": [1, 2.5, None]}


def new_uscc() -> str:
    """A valid, random 统一社会信用代码 (a 事业单位 in 北京市朝阳区), so that modules and
    backends sharing a live server never share a department."""
    org = f"{secrets.randbelow(10**8):08d}"
    body = f"12110105{org}{organisation_code_check_char(org)}"
    return body + uscc_check_char(body)


def tongban(live: LiveServer, *args: str) -> Any:
    """Run a `tongban` command against the live server's database; its JSON output (the
    `pki` and `seal` commands print indented JSON, which `LiveServer.cli` does not read)."""
    out = subprocess.run(
        [str(BIN / "tongban"), *args],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def ensure_pki(live: LiveServer) -> None:
    """`tongban pki init` once per server (until then the trust bundle has no roots)."""
    if not httpx.get(f"{live.url}/api/v1/trust").json()["roots"]:
        assert tongban(live, "pki", "init")["authorities"]


def access_token(live: LiveServer, client: dict[str, Any], scope: str) -> str:
    r = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_events(live: LiveServer, subject: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event, actor, details) recorded about `subject`, sequenced or still pending."""
    # Pending first: the server's sequencer moves events from pending to the log at any
    # moment, so the other order could miss one that moved between the two reads.
    with live.runtime.factory() as s:
        rows = [
            *s.execute(select(PendingEvent).where(PendingEvent.subject == subject)).scalars(),
            *s.execute(select(AuditEvent).where(AuditEvent.subject == subject)).scalars(),
        ]
        unique = {r.event_id: r for r in rows}
        return [(r.event, r.actor, json.loads(r.details)) for r in unique.values()]


@dataclass
class World:
    live: LiveServer
    uscc: str
    seal_id: str
    admin: dict[str, str]
    sealer: dict[str, str]
    other: dict[str, str]
    wrong_scope: dict[str, str]

    def new_seal(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "department_uscc": self.uscc,
            "department_name": "示范市民政局",
            "name": "示范市民政局业务专用章",
            "type": "业务专用章",
            **overrides,
        }
        r = httpx.post(f"{self.live.url}/admin/v1/seals", headers=self.admin, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def seal_json(self, seal_id: str, document: Any = None, **kw: Any) -> httpx.Response:
        body = {"seal_id": seal_id, "document": DOC if document is None else document}
        return httpx.post(
            f"{self.live.url}/api/v1/seal",
            headers=kw.pop("headers", self.sealer),
            json=body,
            **kw,
        )

    def verify(self, token: str) -> dict[str, Any]:
        r = httpx.post(f"{self.live.url}/api/v1/verify", json={"jws": token})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def trust(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.live.url}/api/v1/trust").json())


@pytest.fixture(scope="module")
def world(live: LiveServer) -> World:
    ensure_pki(live)
    uscc = new_uscc()
    admin = live.add_client("Seal admin", "--grant-type", "client_credentials", "--scope", "admin")
    admin_h = bearer(access_token(live, admin, "admin"))
    # The seal the department uses, issued with the CLI as an operator would.
    seal = tongban(
        live,
        "seal",
        "create",
        "--department-uscc",
        uscc,
        "--department-name",
        "示范市民政局",
        "--name",
        "示范市民政局业务专用章",
        "--type",
        "业务专用章",
    )

    def client(name: str, scope: str, department: str) -> dict[str, Any]:
        r = httpx.post(
            f"{live.url}/admin/v1/clients",
            headers=admin_h,
            json={
                "name": name,
                "grant_types": ["client_credentials"],
                "scopes": [scope],
                "department_uscc": department,
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def token(name: str, scope: str, department: str) -> dict[str, str]:
        return bearer(access_token(live, client(name, scope, department), scope))

    return World(
        live=live,
        uscc=uscc,
        seal_id=seal["id"],
        admin=admin_h,
        sealer=token("民政业务系统", "seal:use", uscc),
        other=token("他局业务系统", "seal:use", new_uscc()),
        wrong_scope=token("民政查询系统", "licence:read", uscc),
    )


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = dict(r.json())
    assert body["status"] == status and body["title"]
    return body


# -- sealing JSON -----------------------------------------------------------------------


def test_seal_json_verifies_here_and_with_independent_verifiers(world: World) -> None:
    r = world.seal_json(world.seal_id)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    sealed = r.json()
    assert sealed["format"] == "jws" and sealed["seal_id"] == world.seal_id
    assert sealed["typ"] == jws_seal.SEAL_TYP and sealed["alg"] == "ES256"
    token = sealed["jws"]

    report = world.verify(token)
    assert report["indication"] == "PASSED", report
    assert report["document"] == DOC
    assert report["seal"]["seal_id"] == world.seal_id
    assert report["seal"]["department_uscc"] == world.uscc
    assert len(report["certificate_path"]) == 3

    # A second JOSE library checks the signature with the key of x5c[0]; cryptography's
    # RFC 5280 verifier builds the path to the root that /api/v1/trust publishes.
    jwk = pytest.importorskip("jwcrypto.jwk")
    jws = pytest.importorskip("jwcrypto.jws")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == sealed["kid"]
    certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(
        jwk.JWK.from_pem(
            certs[0]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
        alg="ES256",
    )
    assert json.loads(obj.payload) == DOC
    bundle = world.trust()
    root = x509.load_pem_x509_certificate(bundle["roots"][0]["pem"].encode())
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store([root]))
        .time(datetime.now(UTC))
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=xv.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    assert verifier.verify(certs[0], certs[1:2]).chain[-1] == root
    # ... and our verifier, offline, from the published bundle alone
    offline = jws_seal.verify(token, TrustAnchors.from_bundle(bundle), datetime.now(UTC))
    assert offline.passed, offline.to_dict()

    events = audit_events(world.live, world.seal_id)
    sealed_events = [e for e in events if e[0] == "document.sealed"]
    assert sealed_events and sealed_events[-1][1] and sealed_events[-1][1].startswith("client:")
    assert sealed_events[-1][2]["format"] == "jws"
    assert sealed_events[-1][2]["document_sha256"] == sealed["document_sha256"]


# -- sealing PDF ------------------------------------------------------------------------


def test_seal_pdf_is_pades_bt_with_a_visible_stamp(world: World) -> None:
    r = httpx.post(
        f"{world.live.url}/api/v1/seal",
        params={"seal_id": world.seal_id, "stamp_size": 100, "location": "示范市"},
        headers={**world.sealer, "content-type": "application/pdf"},
        content=blank_pdf(),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    pdf = r.content

    report = httpx.post(
        f"{world.live.url}/api/v1/verify",
        content=pdf,
        headers={"content-type": "application/pdf"},
        timeout=30,
    ).json()
    assert report["indication"] == "PASSED", report
    assert report["signing_time_source"] == "timestamp"
    assert report["seal"]["seal_id"] == world.seal_id

    from asn1crypto import crl as asn1_crl
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    bundle = world.trust()
    root = asn1_x509.Certificate.load(
        x509.load_pem_x509_certificate(bundle["roots"][0]["pem"].encode()).public_bytes(
            serialization.Encoding.DER
        )
    )
    crls = [asn1_crl.CertificateList.load(base64.b64decode(c["der_b64"])) for c in bundle["crls"]]
    context = ValidationContext(
        trust_roots=[root],
        crls=crls,
        allow_fetching=False,
        revocation_mode="hard-fail",
        moment=datetime.now(UTC) + timedelta(seconds=5),
    )
    [embedded] = PdfFileReader(io.BytesIO(pdf)).embedded_regular_signatures
    status = asyncio.run(
        async_validate_pdf_signature(
            embedded, signer_validation_context=context, ts_validation_context=context
        )
    )
    assert status.bottom_line, status.pretty_print_details()  # type: ignore[no-untyped-call]
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    # the stamp: a widget of the requested size with an appearance stream
    widget = embedded.sig_field
    x1, y1, x2, y2 = (float(v) for v in widget["/Rect"])
    assert (round(x2 - x1), round(y2 - y1)) == (100, 100)
    assert "/AP" in widget

    sealed = [e for e in audit_events(world.live, world.seal_id) if e[0] == "document.sealed"]
    assert any(e[2]["format"] == "pdf" for e in sealed)


# -- who may seal -----------------------------------------------------------------------


def test_another_departments_client_is_forbidden(world: World) -> None:
    body = _problem(world.seal_json(world.seal_id, headers=world.other), 403)
    assert body["code"] == "seal_forbidden"


def test_no_token_401_and_wrong_scope_403(world: World) -> None:
    r = world.seal_json(world.seal_id, headers={})
    _problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = world.seal_json(world.seal_id, headers=bearer("not-a-token"))
    _problem(r, 401)
    r = world.seal_json(world.seal_id, headers=world.wrong_scope)
    _problem(r, 403)
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    _problem(world.seal_json(world.seal_id, headers=world.admin), 403)  # admin ≠ seal:use


def test_unknown_seal_404(world: World) -> None:
    assert _problem(world.seal_json("0" * 32), 404)["code"] == "seal_not_found"


# -- bad requests -----------------------------------------------------------------------


def test_malformed_requests_are_problem_details(world: World) -> None:
    url = f"{world.live.url}/api/v1/seal"
    json_h = {**world.sealer, "content-type": "application/json"}
    _problem(httpx.post(url, headers=json_h, content=b"{"), 400)
    # duplicate member names and NaN are not I-JSON (RFC 7493 §2.3)
    dup = b'{"seal_id": "x", "seal_id": "y", "document": 1}'
    _problem(httpx.post(url, headers=json_h, content=dup), 400)
    _problem(httpx.post(url, headers=json_h, content=b'{"seal_id":"x","document":NaN}'), 400)
    body = _problem(httpx.post(url, headers=world.sealer, json={"seal_id": world.seal_id}), 400)
    assert any(e["loc"] == ["document"] for e in body["errors"])
    extra = {"seal_id": world.seal_id, "document": 1, "alg": "none"}
    _problem(httpx.post(url, headers=world.sealer, json=extra), 400)
    too_big_int = {"seal_id": world.seal_id, "document": {"n": 2**60}}
    _problem(httpx.post(url, headers=world.sealer, json=too_big_int), 400)
    nested = b'{"seal_id":"x","document":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _problem(httpx.post(url, headers=json_h, content=nested), 400)
    _problem(
        httpx.post(url, headers={**world.sealer, "content-type": "text/csv"}, content=b"a,b"), 415
    )
    pdf_h = {**world.sealer, "content-type": "application/pdf"}
    _problem(httpx.post(url, headers=pdf_h, content=blank_pdf()), 400)  # no seal_id
    _problem(httpx.post(url, params={"seal_id": world.seal_id}, headers=pdf_h, content=b"x"), 400)
    hostile = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 1 0 R >> endobj\ntrailer<<>>\n%%EOF"
    body = _problem(
        httpx.post(url, params={"seal_id": world.seal_id}, headers=pdf_h, content=hostile), 400
    )
    assert body["code"] == "malformed_input"
    r = httpx.post(url, params={"seal_id": world.seal_id, "stamp_size": 5}, headers=pdf_h)
    _problem(r, 400)  # query validation


def test_oversized_documents_413(world: World) -> None:
    # 200 KiB of canonical JSON: over the 160 KiB a sealed document may have
    body = _problem(world.seal_json(world.seal_id, document={"text": "x" * 200 * 1024}), 413)
    assert body["code"] == "input_too_large"
    # a body past the 1 MiB the service reads at all
    _problem(world.seal_json(world.seal_id, document=["y" * 1100 * 1024]), 413)
    # a PDF over 32 MiB, refused on its Content-Length before it is read
    big = b"%PDF-1.7\n" + b"0" * (32 * 1024 * 1024 + 10)
    try:
        r = httpx.post(
            f"{world.live.url}/api/v1/seal",
            params={"seal_id": world.seal_id},
            headers={**world.sealer, "content-type": "application/pdf"},
            content=big,
            timeout=30,
        )
    except httpx.WriteError:
        return  # the server answered and closed before the client finished writing
    _problem(r, 413)


# -- seal states: suspend, reinstate, revoke, renew -------------------------------------


def test_suspended_seal_409_try_later_and_reinstated(world: World) -> None:
    seal = world.new_seal(name="示范市民政局合同专用章", type="合同专用章")
    token = world.seal_json(seal["id"]).json()["jws"]
    url = f"{world.live.url}/admin/v1/seals/{seal['id']}"
    r = httpx.post(f"{url}/suspend", headers=world.admin, json={"reason": "印章保管人调岗"})
    assert r.status_code == 200 and r.json()["status"] == "suspended", r.text
    assert _problem(world.seal_json(seal["id"]), 409)["code"] == "seal_not_usable"
    report = world.verify(token)
    assert (report["indication"], report["sub_indication"]) == ("INDETERMINATE", "TRY_LATER")
    _problem(httpx.post(f"{url}/suspend", headers=world.admin), 409)  # not active

    r = httpx.post(f"{url}/reinstate", headers=world.admin)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert world.verify(token)["indication"] == "PASSED"
    assert world.seal_json(seal["id"]).status_code == 200
    events = [e[0] for e in audit_events(world.live, seal["id"])]
    assert {"seal.created", "seal.suspended", "seal.reinstated"} <= set(events)


def test_revoked_seal_shows_in_verification(world: World) -> None:
    seal = world.new_seal(name="示范市民政局财务专用章", type="财务专用章")
    token = world.seal_json(seal["id"]).json()["jws"]
    assert world.verify(token)["indication"] == "PASSED"
    r = httpx.post(
        f"{world.live.url}/admin/v1/seals/{seal['id']}/revoke",
        headers=world.admin,
        json={"reason": "key_compromise"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked" and r.json()["revocation_reason"] == "key_compromise"

    report = world.verify(token)
    assert report["indication"] != "PASSED"
    assert report["sub_indication"] in ("REVOKED", "REVOKED_NO_POE"), report
    assert any(c["name"] == "revocation_status" and not c["passed"] for c in report["checks"])
    # the re-signed CRL is published: an offline verifier sees the revocation too
    offline = jws_seal.verify(token, TrustAnchors.from_bundle(world.trust()), datetime.now(UTC))
    assert offline.sub_indication is not None and offline.sub_indication.value.startswith("REVOKED")

    assert _problem(world.seal_json(seal["id"]), 409)["code"] == "seal_not_usable"
    again = httpx.post(f"{world.live.url}/admin/v1/seals/{seal['id']}/revoke", headers=world.admin)
    assert again.status_code == 200  # idempotent, and recorded once
    revoked = [e for e in audit_events(world.live, seal["id"]) if e[0] == "seal.revoked"]
    assert len(revoked) == 1 and revoked[0][2]["reason"] == "key_compromise"
    _problem(
        httpx.post(
            f"{world.live.url}/admin/v1/seals/{seal['id']}/revoke",
            headers=world.admin,
            json={"reason": "because"},
        ),
        400,
    )


def test_revocation_by_another_process_shows_within_the_recheck_interval(
    world: World,
) -> None:
    """The server keeps its trust anchors between verifications and reads the CRL numbers
    again at most every `TRUST_RECHECK_SECONDS`: a revocation made through the CLI (a
    process other than the server) shows in the server's verification that soon."""
    seal = world.new_seal(name="示范市民政局行政审批专用章", type="行政审批专用章")
    token = world.seal_json(seal["id"]).json()["jws"]
    assert world.verify(token)["indication"] == "PASSED"
    assert tongban(world.live, "seal", "revoke", seal["id"], "--reason", "key_compromise")
    revoked_at = time.monotonic()
    report = world.verify(token)
    while report["indication"] == "PASSED" and time.monotonic() - revoked_at < 10:
        time.sleep(0.1)
        report = world.verify(token)
    assert report["sub_indication"] in ("REVOKED", "REVOKED_NO_POE"), report
    # generous for a loaded machine, but bounded: the interval, not a cache lifetime
    assert time.monotonic() - revoked_at < TRUST_RECHECK_SECONDS + 5


def test_renewal_keeps_old_documents_valid(world: World) -> None:
    seal = world.new_seal(name="示范市民政局电子证照专用章", type="电子证照专用章", days=30)
    token = world.seal_json(seal["id"]).json()["jws"]
    r = httpx.post(
        f"{world.live.url}/admin/v1/seals/{seal['id']}/renew",
        headers=world.admin,
        json={"days": 365},
    )
    assert r.status_code == 200, r.text
    renewed = r.json()
    assert renewed["version"] == 2 and renewed["certificate_serial"] != seal["certificate_serial"]
    assert world.verify(token)["indication"] == "PASSED"
    fresh = world.seal_json(seal["id"]).json()
    assert fresh["kid"] != json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    assert world.verify(fresh["jws"])["indication"] == "PASSED"
    issued = [e for e in audit_events(world.live, seal["id"]) if e[0] == "certificate.issued"]
    assert issued and issued[0][2]["previous_serial"] == seal["certificate_serial"]


# -- the rest of the admin API ----------------------------------------------------------


def test_admin_list_get_images_and_pki(world: World) -> None:
    base = f"{world.live.url}/admin/v1"
    listed = httpx.get(f"{base}/seals", headers=world.admin, params={"department_uscc": world.uscc})
    assert listed.status_code == 200
    assert world.seal_id in {s["id"] for s in listed.json()}
    assert all(s["department_uscc"] == world.uscc for s in listed.json())
    active = httpx.get(f"{base}/seals", headers=world.admin, params={"status": "active"}).json()
    assert active and all(s["status"] == "active" for s in active)
    _problem(httpx.get(f"{base}/seals", headers=world.admin, params={"status": "lost"}), 400)

    detail = httpx.get(f"{base}/seals/{world.seal_id}", headers=world.admin).json()
    assert detail["certificates"][0]["current"] and detail["certificates"][0]["status"] == "valid"
    assert detail["events"][0]["event"] == "seal.created"
    _problem(httpx.get(f"{base}/seals/nope", headers=world.admin), 404)

    svg = httpx.get(f"{base}/seals/{world.seal_id}/image.svg", headers=world.admin)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "示" in svg.text
    minidom.parseString(svg.content)
    png = httpx.get(f"{base}/seals/{world.seal_id}/image.png?size=128", headers=world.admin)
    assert png.status_code in (200, 503)  # 503 only without a CJK font on the server
    if png.status_code == 200:
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")

    pki = httpx.get(f"{base}/pki", headers=world.admin).json()
    assert pki["initialised"] is True
    assert pki["authorities"][0]["kind"] == "root"
    assert all(a["crl_url"].startswith(world.live.url) for a in pki["authorities"])

    # only admins
    for h in ({}, world.sealer):
        r = httpx.get(f"{base}/seals", headers=h)
        assert r.status_code in (401, 403)
    r = httpx.post(f"{base}/seals", headers=world.sealer, json={})
    assert r.status_code in (400, 403)  # never reaches the PKI


def test_admin_create_refuses_bad_input(world: World) -> None:
    url = f"{world.live.url}/admin/v1/seals"
    good = {
        "department_uscc": world.uscc,
        "department_name": "示范市民政局",
        "name": "示范市民政局公章",
        "type": "公章",
    }
    _problem(httpx.post(url, headers=world.admin, json={**good, "type": "私章"}), 400)
    _problem(httpx.post(url, headers=world.admin, json={**good, "department_uscc": "1" * 18}), 400)
    _problem(httpx.post(url, headers=world.admin, json={**good, "alg": "HS256"}), 400)
    _problem(httpx.post(url, headers=world.admin, json={**good, "name": " "}), 400)
    # bodies are bounded before the token is even looked at (FastAPI reads them first)
    _problem(httpx.post(url, json={**good, "purpose": "x" * 100_000}), 413)
    chunked = httpx.post(url, content=iter([b"{}"]), headers={"content-type": "application/json"})
    _problem(chunked, 411)


def test_regression_issue_3_quote_in_department_name_keeps_svg_well_formed(
    world: World,
) -> None:
    """`seal_svg` put the name into `aria-label` escaped for text only: a `"` ended the
    attribute (a malformed SVG, and markup injected into it)."""
    name = '示范市"放管服"办'
    seal = world.new_seal(department_name=name, name="示范市放管服办公章", type="公章")
    svg = httpx.get(f"{world.live.url}/admin/v1/seals/{seal['id']}/image.svg", headers=world.admin)
    root = minidom.parseString(svg.content).documentElement
    assert root is not None and root.getAttribute("aria-label") == name


def test_admin_schema_lists_exactly_the_services_seal_types_and_reasons() -> None:
    """The admin schema spells them out for the OpenAPI document; `signing.seals` decides."""
    from typing import get_args

    from signing import seals
    from web.seal_admin_routes import RevocationReason, SealIn

    assert get_args(RevocationReason) == seals.REVOCATION_REASONS
    schema = SealIn.model_json_schema()["properties"]["type"]
    assert tuple(schema["enum"]) == seals.SEAL_TYPES
