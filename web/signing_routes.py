"""Public HTTP endpoints of the seal trust layer.

- `POST /api/v1/verify`: verify a sealed JWS (JSON `{"jws": "..."}`, `application/jose`)
  or a sealed PDF (`application/pdf`, or multipart field `file`); `{"jws": [...]}`
  verifies a batch. Answers the frozen report as JSON; bad requests get RFC 9457 problem
  details, oversized ones 413. The service's own trust anchors and CRLs, at the current
  time.
- `GET /api/v1/trust`: root and issuing CA, TSA and seal certificates, CRLs (and their
  URLs) as PEM/base64 and a JWKS with `x5c`, cacheable, for offline verifiers;
  `?format=pem` gives the CA certificates as one PEM file.
- `GET /pki/crl/{ca}.crl`: the CA's current CRL, DER (RFC 5280 §5, `application/pkix-crl`).
- `POST /tsa`: the RFC 3161 timestamp authority over HTTP (§3.4,
  `application/timestamp-query` → `application/timestamp-reply`).
- `POST /api/v1/seal`: a department system (access token with scope `seal:use`) seals a
  JSON document (→ compact JWS) or a PDF (→ PAdES B-T with the visible stamp) with one of
  its department's seals; recorded as `document.sealed`.

The admin seal API (`web.seal_admin_routes`) and the public verification page
(`web.verify_page`) build on this module's `SigningState`.

The runtime is `request.app.state.runtime` (`factory`, `keks`, `clock`, `settings`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from idp.context import Context
from idp.models import Client
from keys.pki import ISSUING, ROOT, Pki, PkiError, pem
from keys.pki_models import CertificateAuthority
from keys.signer import public_jwk_of
from kit.canonical import canonical_json, loads_strict
from kit.clock import utc
from kit.db import transaction
from kit.errors import InvalidInput, TongbanError
from signing import jws_seal, pades, seals
from signing.errors import (
    InputTooLarge,
    MalformedInput,
    SealForbidden,
    SealNotFound,
    SealNotUsable,
)
from signing.models import Seal
from signing.report import ReportEncoder, VerificationReport
from signing.seals import SCOPE_SEAL_USE, SealSigner
from signing.trust import TrustAnchors, ValidationPolicy, x5t_s256
from signing.tsa import MAX_REQUEST_BYTES, TimestampAuthority, load_tsa
from web.auth import require_scope
from web.cli_pki import build_pki
from web.http import problem, unit_of_work

log = logging.getLogger("tongban.signing")
router = APIRouter()

POLICY = ValidationPolicy()
#: JSON and JOSE bodies (a batch of 1000 sealed documents fits easily)
MAX_JSON_BYTES = 8 * 1024 * 1024
NO_STORE = {"Cache-Control": "no-store"}


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes without buffering them."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


#: Seconds a process relies on its last reading of the CRL numbers before reading them
#: again. Every revocation, suspension or reinstatement re-signs a CRL and so bumps its
#: CA's CRL number: reading those numbers is the cheap "trust version", but at 100 µs
#: (SQLite) to 400 µs (PostgreSQL) of CPU it costs more than verifying a seal, so it is
#: not done on every request. A change made through this process shows at once
#: (`SigningState.invalidate_trust`, called after the change commits); one made through
#: another replica or the CLI shows within this many seconds. A CRL reaching its
#: nextUpdate is noticed at once as well (its time is kept from the last reading).
TRUST_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class _Anchors:
    key: tuple[tuple[str, int], ...]
    anchors: TrustAnchors
    #: `time.monotonic()` when the CRL numbers were read
    read_at: float
    #: `SigningState._generation` before they were read
    generation: int
    #: the earliest CRL nextUpdate: from then on the anchors must be rebuilt
    due_at: datetime | None


class SigningState:
    """Per-process state: the PKI service, the trust anchors (rebuilt only when a CA's
    CRL number changes, read at most every `TRUST_RECHECK_SECONDS`) and the encoder that
    renders verification reports."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.pki: Pki = build_pki(runtime.settings, runtime.keks)
        self.encoder = ReportEncoder()
        self._anchors: _Anchors | None = None
        self._generation = 0
        self._tsa: TimestampAuthority | None = None
        self._lock = threading.Lock()

    def invalidate_trust(self) -> None:
        """A revocation, suspension or reinstatement has just been committed: read the
        trust anchors again before the next verification."""
        with self._lock:
            self._generation += 1

    def fresh_anchors(self) -> TrustAnchors | None:
        """The trust anchors if they can be used without reading the database."""
        cached = self._anchors
        if (
            cached is None
            or cached.generation != self._generation
            or time.monotonic() - cached.read_at > TRUST_RECHECK_SECONDS
            or (cached.due_at is not None and cached.due_at <= self.runtime.clock.now())
        ):
            return None
        return cached.anchors

    def anchors(self) -> TrustAnchors:
        fresh = self.fresh_anchors()
        if fresh is not None:
            return fresh
        # Taken before reading: an invalidation during the read leaves these stale.
        generation, read_at = self._generation, time.monotonic()
        now = self.runtime.clock.now()
        with self.runtime.factory() as session:
            rows = list(
                session.execute(
                    select(
                        CertificateAuthority.name,
                        CertificateAuthority.crl_number,
                        CertificateAuthority.crl_next_update,
                    )
                ).all()
            )
        key = tuple((name, number) for name, number, _ in rows)
        updates = [utc(n) for _, _, n in rows if n is not None]
        due_at = min(updates) if updates else None
        cached = self._anchors
        if cached is not None and cached.key == key and (due_at is None or now < due_at):
            self._anchors = _Anchors(key, cached.anchors, read_at, generation, due_at)
            return cached.anchors
        with self._lock, transaction(self.runtime.factory) as session:
            roots = (self.pki.ca_certificate(session, ROOT),)
            intermediates = (self.pki.ca_certificate(session, ISSUING),)
            crls = tuple(
                x509.load_der_x509_crl(self.pki.current_crl(session, name, now))
                for name in (ROOT, ISSUING)
            )
            ca_rows = self.pki.authorities(session)
            anchors = TrustAnchors(roots, intermediates, crls)
            next_updates = [utc(c.crl_next_update) for c in ca_rows if c.crl_next_update]
            self._anchors = _Anchors(
                tuple((c.name, c.crl_number) for c in ca_rows),
                anchors,
                read_at,
                generation,
                min(next_updates) if next_updates else None,
            )
        return anchors

    def tsa(self) -> TimestampAuthority:
        with self._lock:
            if self._tsa is None or not (
                self._tsa.chain.leaf.not_valid_before_utc
                <= self.runtime.clock.now()
                <= self._tsa.chain.leaf.not_valid_after_utc
            ):
                with self.runtime.factory() as session:
                    self._tsa = load_tsa(session, self.pki, self.runtime.clock)
            return self._tsa


def signing_state(request: Request) -> SigningState:
    state = getattr(request.app.state, "signing", None)
    if state is None:
        state = SigningState(request.app.state.runtime)
        request.app.state.signing = state
    return state


def _report_json(report: VerificationReport) -> dict[str, Any]:
    return report.to_dict()


def _verify_jws(
    state: SigningState, tokens: list[object], batch: bool, anchors: TrustAnchors | None = None
) -> bytes:
    """The JSON answer for one JWS or a batch. Paths, CRL signatures and the rendering of
    what reports share are computed once per process (`TrustContext`, `ReportEncoder`);
    revocation and validity are judged at this request's moment."""
    verifier = jws_seal.JwsVerifier(
        anchors or state.anchors(), state.runtime.clock.now(), policy=POLICY
    )
    reports = verifier.verify_many(tokens)
    if not batch:
        return state.encoder.encode(reports[0])
    return state.encoder.encode_batch(reports)


async def _verify_one(state: SigningState, token: str) -> bytes:
    # One JWS costs about as much CPU as handing it to the thread pool: verify it on the
    # event loop unless the trust anchors must first be read from the database.
    anchors = state.fresh_anchors()
    if anchors is not None:
        return _verify_jws(state, [token], False, anchors)
    return await run_in_threadpool(_verify_jws, state, [token], False)


def _json(content: bytes) -> Response:
    return Response(content, media_type="application/json", headers=NO_STORE)


def _verify_pdf(state: SigningState, pdf: bytes) -> dict[str, Any]:
    anchors = state.anchors()
    moment: datetime = state.runtime.clock.now()
    reports = pades.verify_all(pdf, anchors, moment, policy=POLICY)
    failing = [r for r in reports if not r.passed]
    main = failing[0] if failing else reports[-1]
    body = _report_json(main)
    if len(reports) > 1:
        body["signatures"] = [_report_json(r) for r in reports]
    return body


@router.post("/api/v1/verify", tags=["seals"], summary="Verify a sealed JWS or PDF")
async def verify(request: Request) -> Response:
    """Verify offline against the province's trust anchors at the current time. The
    answer is 200 with the report for any document (PASSED, INDETERMINATE or FAILED);
    4xx problem details only when the request itself is unusable."""
    state = signing_state(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media == "application/pdf":
            pdf = await _body(request, POLICY.max_pdf_bytes)
            body = await run_in_threadpool(_verify_pdf, state, pdf)
        elif media in ("application/jose", "text/plain"):
            raw = await _body(request, POLICY.max_jws_bytes)
            token = raw.decode("ascii", errors="replace").strip()
            return _json(await _verify_one(state, token))
        elif media == "application/json":
            raw = await _body(request, MAX_JSON_BYTES)
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                return problem(400, "Malformed JSON", "The body is not JSON.")
            jws = data.get("jws") if isinstance(data, dict) else None
            if isinstance(jws, str):
                return _json(await _verify_one(state, jws))
            if isinstance(jws, list) and jws:
                if len(jws) > POLICY.max_batch:
                    return problem(413, "Batch too large", f"At most {POLICY.max_batch} documents.")
                return _json(await run_in_threadpool(_verify_jws, state, jws, True))
            return problem(
                400,
                "Nothing to verify",
                'Send {"jws": "<compact JWS>"} or {"jws": ["…", "…"]}.',
            )
        elif media == "multipart/form-data":
            if int(request.headers.get("content-length") or 0) > POLICY.max_pdf_bytes + 65536:
                raise _TooLarge
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            text = form.get("jws")
            if upload is not None and not isinstance(upload, str):
                data_bytes = await upload.read(POLICY.max_pdf_bytes + 1)
                if len(data_bytes) > POLICY.max_pdf_bytes:
                    raise _TooLarge
                if pades.looks_like_pdf(data_bytes):
                    body = await run_in_threadpool(_verify_pdf, state, data_bytes)
                else:
                    token = data_bytes.decode("ascii", errors="replace").strip()
                    return _json(await _verify_one(state, token))
            elif isinstance(text, str) and text.strip():
                return _json(await _verify_one(state, text.strip()))
            else:
                return problem(400, "Nothing to verify", "Upload a field `file` or `jws`.")
        else:
            return problem(
                415,
                "Unsupported media type",
                "Send application/json, application/jose, application/pdf or multipart/form-data.",
            )
    except _TooLarge:
        return problem(413, "Too large", "The document is larger than this service accepts.")
    except PkiError:
        return problem(503, "Trust anchors unavailable", "The PKI is not initialised.")
    return JSONResponse(body, headers=NO_STORE)


def _trust_bundle(state: SigningState) -> dict[str, Any]:
    runtime = state.runtime
    pki = state.pki
    now = runtime.clock.now()
    with transaction(runtime.factory) as session:
        cas = pki.authorities(session)
        crls = []
        for ca in cas:
            der = pki.current_crl(session, ca.name, now)
            crl = x509.load_der_x509_crl(der)
            crls.append(
                {
                    "ca": ca.name,
                    "url": pki.settings.crl_url(ca.name),
                    "der_b64": base64.b64encode(der).decode(),
                    "this_update": crl.last_update_utc.isoformat(),
                    "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
                }
            )

        def entry(name: str, cert: x509.Certificate) -> dict[str, Any]:
            return {
                "name": name,
                "subject": cert.subject.rfc4514_string(),
                "sha256": cert.fingerprint(hashes.SHA256()).hex(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "pem": pem(cert),
            }

        certs = {ca.name: x509.load_pem_x509_certificate(ca.certificate_pem.encode()) for ca in cas}
        roots = [entry(ca.name, certs[ca.name]) for ca in cas if ca.kind == "root"]
        intermediates = [entry(ca.name, certs[ca.name]) for ca in cas if ca.kind != "root"]
        tsas = [
            entry("tsa", x509.load_pem_x509_certificate(r.certificate_pem.encode()))
            for r in pki.certificates(session, purpose="tsa")
            if r.status == "valid"
        ]
        seal_entries = []
        keys = []
        for seal in session.execute(select(Seal).order_by(Seal.created_at)).scalars():
            for row in pki.certificates(session, purpose="seal"):
                if row.holder != seal.id:
                    continue
                chain = pki.chain_for(session, row)
                cert = chain.leaf
                kid = x5t_s256(cert)
                seal_entries.append(
                    {
                        "seal_id": seal.id,
                        "name": seal.name,
                        "type": seal.seal_type,
                        "department_uscc": seal.department_uscc,
                        "department_name": seal.department_name,
                        "seal_status": seal.status,
                        "certificate_status": row.status,
                        "current": row.serial == seal.certificate_serial,
                        "kid": kid,
                        "serial": row.serial,
                        "not_before": cert.not_valid_before_utc.isoformat(),
                        "not_after": cert.not_valid_after_utc.isoformat(),
                        "pem": pem(cert),
                    }
                )
                key = _public_jwk(cert, kid, seal.alg)
                key["x5c"] = [base64.b64encode(d).decode() for d in chain.der()]
                keys.append(key)
    return {
        "issuer": pki.settings.issuer,
        "roots": roots,
        "intermediates": intermediates,
        "timestamp_authorities": tsas,
        "seals": seal_entries,
        "crls": crls,
        "jwks": {"keys": keys},
        "jws_typ": jws_seal.SEAL_TYP,
        "algorithms": sorted(POLICY.algorithms),
    }


def _public_jwk(cert: x509.Certificate, kid: str, alg: str) -> dict[str, Any]:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return {"kid": kid}
    return public_jwk_of(key, kid=kid, alg=alg)


@router.get("/api/v1/trust", tags=["seals"], summary="Trust anchors for offline verifiers")
def trust(request: Request, format: str = "json") -> Response:
    state = signing_state(request)
    try:
        bundle = _trust_bundle(state)
    except PkiError:
        return problem(503, "Trust anchors unavailable", "The PKI is not initialised.")
    if format == "pem":
        text = "".join(c["pem"] for c in bundle["roots"] + bundle["intermediates"])
        content: bytes = text.encode()
        media = "application/x-pem-file"
    else:
        content = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()
        media = "application/json"
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    headers = {"Cache-Control": "public, max-age=300", "ETag": etag, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media, headers=headers)


@router.get("/pki/crl/{ca}.crl", tags=["seals"], summary="A CA's current CRL (DER)")
def crl(request: Request, ca: str) -> Response:
    state = signing_state(request)
    now = state.runtime.clock.now()
    try:
        with transaction(state.runtime.factory) as session:
            der = state.pki.current_crl(session, ca, now)
    except PkiError:
        return problem(404, "No such CA", f"There is no CRL for {ca!r}.")
    parsed = x509.load_der_x509_crl(der)
    next_update = parsed.next_update_utc
    max_age = 3600
    if next_update is not None:
        max_age = max(0, min(max_age, int((next_update - now).total_seconds())))
    return Response(
        der,
        media_type="application/pkix-crl",
        headers={
            "Cache-Control": f"public, max-age={max_age}",
            "ETag": '"' + hashlib.sha256(der).hexdigest()[:32] + '"',
        },
    )


@router.post("/tsa", tags=["seals"], summary="RFC 3161 timestamp authority")
async def timestamp(request: Request) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/timestamp-query":
        return problem(415, "Unsupported media type", "Send application/timestamp-query.")
    try:
        body = await _body(request, MAX_REQUEST_BYTES)
    except _TooLarge:
        return problem(413, "Too large", "A timestamp query is a few hundred bytes.")
    state = signing_state(request)
    try:
        tsa = await run_in_threadpool(state.tsa)
    except PkiError:
        return problem(503, "Timestamp authority unavailable", "The PKI is not initialised.")
    reply = await run_in_threadpool(tsa.respond, body)
    return Response(reply, media_type="application/timestamp-reply", headers=NO_STORE)


# -- sealing ----------------------------------------------------------------------------

#: The raw JSON body may be pretty-printed or escaped; the limit that matters is on the
#: RFC 8785 form of the document (`jws_seal.MAX_DOCUMENT_BYTES`, 160 KiB).
MAX_SEAL_JSON_BODY = 1024 * 1024
SealClient = Annotated[dict[str, Any], Depends(require_scope(SCOPE_SEAL_USE))]


class SealJsonIn(BaseModel):
    """A JSON document to seal (`Content-Type: application/json`)."""

    model_config = ConfigDict(extra="forbid")

    seal_id: str = Field(
        min_length=1, max_length=64, description="A seal of the client's own department"
    )
    document: Any = Field(
        description="Any I-JSON value (RFC 7493); it is sealed in its RFC 8785 canonical "
        "form, which may be at most 160 KiB"
    )


class SealedJson(BaseModel):
    """The sealed JSON document."""

    format: Literal["jws"] = "jws"
    jws: str = Field(description="Compact JWS (RFC 7515 §7.1) over the canonical document")
    seal_id: str
    kid: str = Field(description="`x5t#S256` of the seal certificate (also in the header)")
    alg: str = Field(description="ES256 or PS256, as the seal's key is")
    typ: str = Field(description="The explicit JOSE `typ` of sealed documents")
    sealed_at: datetime = Field(description="The claimed signing time (`sigT`)")
    document_sha256: str = Field(description="SHA-256 (hex) of the canonical document")


_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_SEAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The sealed JWS (JSON request) or the sealed PDF (PDF request)",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    },
    400: {"description": "Malformed JSON, not a PDF, unknown fields", **_PROBLEM},
    401: {"description": "No or an invalid access token", **_PROBLEM},
    403: {"description": "Scope seal:use missing, or the seal is another department's", **_PROBLEM},
    404: {"description": "No such seal", **_PROBLEM},
    409: {"description": "The seal is suspended, revoked or outside its validity", **_PROBLEM},
    413: {"description": "Over 160 KiB of canonical JSON or 32 MiB of PDF", **_PROBLEM},
    415: {"description": "Neither application/json nor application/pdf", **_PROBLEM},
    503: {"description": "The PKI or its timestamp authority is not available", **_PROBLEM},
}
_SEAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SealJsonIn.model_json_schema()},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
#: RFC 9457 titles for the refusals a caller must tell apart (the status is the error's:
#: SealForbidden 403, SealNotUsable 409, SealNotFound 404, InputTooLarge 413, …).
_REFUSALS: tuple[tuple[type[TongbanError], str], ...] = (
    (SealForbidden, "Seal not permitted"),
    (SealNotUsable, "Seal not usable"),
    (SealNotFound, "Seal not found"),
    (InputTooLarge, "Too large"),
    (MalformedInput, "Malformed input"),
    (InvalidInput, "Invalid input"),
    (PkiError, "Not possible in the PKI's present state"),
)


def signing_problem(exc: TongbanError) -> Response:
    """RFC 9457 problem details for a refused seal request or seal action: the error's
    status, a title per kind, its public description and its code, never its private
    detail. A failure of ours (5xx) is logged and answered 503 without details."""
    if not 400 <= exc.status < 500:
        log.error("seal request failed: %s (%s)", exc.code, exc.detail or exc.description)
        return problem(503, "Service unavailable", "The request could not be completed now.")
    title = next((t for kind, t in _REFUSALS if isinstance(exc, kind)), "Request refused")
    return problem(exc.status, title, exc.description, extra={"code": exc.code})


def _token_scopes(claims: dict[str, Any]) -> list[str]:
    return str(claims.get("scope", "")).split()


def _open(
    ctx: Context, state: SigningState, claims: dict[str, Any], seal_id: str, now: datetime
) -> tuple[Client, SealSigner]:
    """The client and the seal it asks for, opened at `now` (the moment the document will
    say it was sealed): `open_seal` checks ownership, scope, status and validity. The
    client must still be registered and active: its department decides which seals it
    may use."""
    client = ctx.clients.get(str(claims.get("client_id", "")))
    if client is None:
        raise SealForbidden("the client is not registered or not active")
    sealer = seals.open_seal(
        ctx.session,
        state.pki,
        seal_id,
        now,
        department_uscc=client.department_uscc,
        scopes=_token_scopes(claims),
    )
    return client, sealer


def _serial(sealer: SealSigner) -> str:
    return f"{sealer.chain.leaf.serial_number:x}"


def _record_sealed(ctx: Context, client: Client, sealer: SealSigner, **details: Any) -> None:
    """`document.sealed`, in the unit of work that hands the sealed document out."""
    ctx.audit.record(
        ctx.session,
        "document.sealed",
        actor=f"client:{client.client_id}",
        subject=sealer.seal_id,
        client_id=client.client_id,
        source=ctx.source,
        details={"kid": sealer.kid, "certificate_serial": _serial(sealer), **details},
    )


def _seal_json(
    state: SigningState,
    request: Request,
    claims: dict[str, Any],
    body: SealJsonIn,
    canonical: bytes,
) -> SealedJson:
    runtime = state.runtime
    now = runtime.clock.now()
    digest = hashlib.sha256(canonical).hexdigest()
    # The request owns the transaction: the JWS is handed out only once its audit event
    # has been committed with it.
    with unit_of_work(runtime, request) as ctx:
        client, sealer = _open(ctx, state, claims, body.seal_id, now)
        token = jws_seal.seal(body.document, sealer, now=now)
        _record_sealed(
            ctx, client, sealer, format="jws", document_sha256=digest, bytes=len(canonical)
        )
    return SealedJson(
        jws=token,
        seal_id=sealer.seal_id,
        kid=sealer.kid,
        alg=sealer.signer.alg,
        typ=jws_seal.SEAL_TYP,
        sealed_at=now.replace(microsecond=0),
        document_sha256=digest,
    )


def _seal_pdf(
    state: SigningState,
    request: Request,
    claims: dict[str, Any],
    seal_id: str,
    pdf: bytes,
    placement: pades.StampPlacement,
    reason: str | None,
    location: str | None,
) -> bytes:
    runtime = state.runtime
    now = runtime.clock.now()
    with unit_of_work(runtime, request) as ctx:
        client, sealer = _open(ctx, state, claims, seal_id, now)
        tsa = state.tsa()
        try:
            sealed = pades.seal(
                pdf,
                sealer,
                tsa,
                now=now,
                placement=placement,
                reason=reason,
                location=location,
                max_bytes=POLICY.max_pdf_bytes,
            )
        except TongbanError:  # ours, with its own status (a signing device failing: 5xx)
            raise
        except Exception as exc:
            # A hostile or broken PDF can fail anywhere inside the PDF library: that is
            # the caller's input, not our fault (the log keeps the detail).
            # repr, bounded: the message may quote the hostile bytes
            detail = repr(exc)[:300]
            log.warning("PDF could not be sealed: %s", detail)
            raise MalformedInput("the PDF could not be sealed", detail=detail) from exc
        _record_sealed(
            ctx,
            client,
            sealer,
            format="pdf",
            document_sha256=hashlib.sha256(pdf).hexdigest(),
            sealed_sha256=hashlib.sha256(sealed).hexdigest(),
            bytes=len(pdf),
        )
    return sealed


def _seal_json_body(raw: bytes) -> tuple[SealJsonIn, bytes] | Response:
    """Parse and check the JSON request: strict I-JSON (no duplicate names, no NaN), the
    schema, and the canonical size of the document."""
    try:
        data = loads_strict(raw)
    except InvalidInput:
        return problem(400, "Malformed JSON", "The body is not valid JSON (RFC 8259, I-JSON).")
    try:
        body = SealJsonIn.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return problem(
            400,
            "Invalid request",
            'Send {"seal_id": "…", "document": …}.',
            extra={"errors": errors},
        )
    canonical = canonical_json(body.document)  # raises CanonicalisationError (400)
    if len(canonical) > jws_seal.MAX_DOCUMENT_BYTES:
        raise InputTooLarge(
            f"a sealed JSON document is at most {jws_seal.MAX_DOCUMENT_BYTES} bytes "
            "in canonical form"
        )
    return body, canonical


@router.post(
    "/api/v1/seal",
    tags=["seals"],
    summary="Seal a JSON document (compact JWS) or a PDF (PAdES B-T)",
    response_model=SealedJson,
    responses=_SEAL_RESPONSES,
    openapi_extra=_SEAL_BODY,
)
async def seal_document(
    request: Request,
    claims: SealClient,
    seal_id: Annotated[
        str | None, Query(max_length=64, description="The seal (PDF requests)")
    ] = None,
    stamp_page: Annotated[
        int, Query(ge=-1, le=100_000, description="Page for the stamp, 0-based; -1 = last")
    ] = -1,
    stamp_x: Annotated[float, Query(ge=0, le=14_400, description="PDF points from the left")] = 400,
    stamp_y: Annotated[
        float, Query(ge=0, le=14_400, description="PDF points from the bottom")
    ] = 80,
    stamp_size: Annotated[float, Query(ge=36, le=600, description="Side of the stamp")] = 120,
    reason: Annotated[str | None, Query(max_length=128, description="PDF /Reason")] = None,
    location: Annotated[str | None, Query(max_length=128, description="PDF /Location")] = None,
) -> Response:
    """A department system seals with one of its own department's seals (scope
    `seal:use`; the client's `department_uscc` must be the seal's).

    - `application/json` `{"seal_id", "document"}` → `SealedJson` (a compact JWS over the
      RFC 8785 form of `document`, ES256/PS256, `x5c` up to the issuing CA).
    - `application/pdf` with `?seal_id=` → the sealed PDF: PAdES B-T, timestamped by the
      province's TSA, with the seal's red stamp on the page (`stamp_*`).

    Each sealing is recorded as the audit event `document.sealed` in the same
    transaction."""
    state = signing_state(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media == "application/json":
            parsed = _seal_json_body(await _body(request, MAX_SEAL_JSON_BODY))
            if isinstance(parsed, Response):
                return parsed
            body, canonical = parsed
            sealed_json = await run_in_threadpool(
                _seal_json, state, request, claims, body, canonical
            )
            return JSONResponse(sealed_json.model_dump(mode="json"), headers=NO_STORE)
        if media == "application/pdf":
            if not seal_id:
                return problem(400, "Seal not named", "Name the seal with ?seal_id=… for a PDF.")
            pdf = await _body(request, POLICY.max_pdf_bytes)
            if not pades.looks_like_pdf(pdf):
                return problem(400, "Not a PDF", "The body does not start with %PDF-.")
            placement = pades.StampPlacement(stamp_page, stamp_x, stamp_y, stamp_size)
            sealed_pdf = await run_in_threadpool(
                _seal_pdf, state, request, claims, seal_id, pdf, placement, reason, location
            )
            return Response(
                sealed_pdf,
                media_type="application/pdf",
                headers={**NO_STORE, "Content-Disposition": 'attachment; filename="sealed.pdf"'},
            )
        return problem(415, "Unsupported media type", "Send application/json or application/pdf.")
    except _TooLarge:
        return problem(413, "Too large", "The document is larger than this service seals.")
    except PkiError:
        # a seal exists only once the PKI does: what fails here is the TSA or a CA
        return problem(503, "PKI unavailable", "The PKI or its timestamp authority is unusable.")
    except TongbanError as exc:
        return signing_problem(exc)


__all__ = ["SigningState", "router", "signing_problem", "signing_state"]
