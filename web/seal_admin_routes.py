"""The admin API of electronic seals (`/admin/v1/seals`, `/admin/v1/pki`): issue, list,
suspend, reinstate, revoke and renew seals, draw their image, and show the PKI.

Access tokens with the `admin` scope only, as for the rest of `/admin/v1`. Each action
runs in the request's transaction and is recorded twice: as a `SealEvent` (the seal's own
history, `signing.seals`) and in the audit log (`seal.created`, `seal.suspended`,
`seal.reinstated`, `seal.revoked`; a renewal is the `certificate.issued` of the new seal
certificate). Refusals are RFC 9457 problem details.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from idp.context import Context
from keys.pki import Pki
from keys.pki_models import IssuedCertificate
from kit.clock import utc
from kit.errors import TongbanError
from signing import seals
from signing.models import Seal
from signing.seal_image import seal_png, seal_svg
from web.auth import require_scope
from web.http import JSON_HEADERS, problem, unit_of_work
from web.signing_routes import signing_problem, signing_state

#: Admin bodies are small JSON objects.
MAX_ADMIN_BODY = 64 * 1024


class _BoundedBody(APIRoute):
    """FastAPI reads a JSON body before it checks the token: refuse a large one first, by
    its declared length (RFC 9457 problems; FastAPI's own limit answers in plain text). A
    body of undeclared length is refused too (411, RFC 9110 §15.5.12): no admin client
    needs to stream."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is None and "transfer-encoding" in request.headers:
                return problem(411, "Length required", "Send the body with a Content-Length.")
            if declared is not None and (not declared.isdigit() or int(declared) > MAX_ADMIN_BODY):
                return problem(
                    413, "Too large", f"Admin bodies are at most {MAX_ADMIN_BODY} bytes."
                )
            return await handler(request)

        return bounded


router = APIRouter(prefix="/admin/v1", tags=["admin"], route_class=_BoundedBody)
Admin = Annotated[dict[str, Any], Depends(require_scope("admin"))]
T = TypeVar("T")

SealStatus = Literal["active", "suspended", "revoked"]
RevocationReason = Literal[
    "unspecified",
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
]


# -- schemas ----------------------------------------------------------------------------


class SealIn(BaseModel):
    department_uscc: str = Field(min_length=18, max_length=18, description="统一社会信用代码")
    department_name: str = Field(min_length=1, max_length=64, examples=["示范市民政局"])
    name: str = Field(min_length=1, max_length=64, examples=["示范市民政局业务专用章"])
    type: str = Field(
        max_length=32,
        description="The kind of seal",
        json_schema_extra={"enum": list(seals.SEAL_TYPES)},
    )
    purpose: str | None = Field(
        default=None, max_length=32, description="Text below the star (default: the type)"
    )
    backend: Literal["software", "pkcs11"] = Field(
        default="software", description="Where the key is made and kept"
    )
    alg: Literal["ES256", "PS256"] = "ES256"
    days: int | None = Field(
        default=None, ge=1, le=3650, description="Validity (default: the PKI's, 3 years)"
    )


class SuspendIn(BaseModel):
    reason: str = Field(default="", max_length=200, description="Why (kept in the history)")


class RevokeIn(BaseModel):
    reason: RevocationReason = Field(
        default="cessation_of_operation", description="CRL reason code (RFC 5280 §5.3.1)"
    )


class RenewIn(BaseModel):
    days: int | None = Field(default=None, ge=1, le=3650, description="Validity of the new one")


class SealOut(BaseModel):
    id: str
    name: str
    type: str
    purpose: str
    department_uscc: str
    department_name: str
    alg: str
    key_backend: str
    certificate_serial: str
    not_before: datetime
    not_after: datetime
    status: SealStatus
    version: int
    created_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None


class SealCertificateOut(BaseModel):
    serial: str
    status: str = Field(description="valid, on_hold or revoked")
    current: bool
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None


class SealEventOut(BaseModel):
    event: str
    actor: str
    at: datetime
    detail: dict[str, Any]


class SealDetailOut(SealOut):
    certificates: list[SealCertificateOut]
    events: list[SealEventOut]


class AuthorityOut(BaseModel):
    name: str
    kind: str
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    key: str = Field(description="software, pkcs11 or offline (the root kept apart)")
    crl_url: str
    crl_number: int
    crl_next_update: datetime | None


class PkiStatusOut(BaseModel):
    initialised: bool
    authorities: list[AuthorityOut]


# -- helpers ----------------------------------------------------------------------------


def _seal_out(seal: Seal) -> SealOut:
    return SealOut.model_validate(seals.seal_summary(seal))


def _actor(admin: dict[str, Any]) -> str:
    return f"client:{admin['client_id']}"


async def _act(
    request: Request, work: Callable[[Context, Pki], T], *, changes_trust: bool = False
) -> T | Response:
    """Run `work` in the request's transaction (commit on return, roll back on error) off
    the event loop; refusals become problem details. `changes_trust`: the work may
    re-sign a CRL, so this process's verifications read the trust anchors again."""
    state = signing_state(request)

    def run() -> T:
        try:
            with unit_of_work(state.runtime, request) as ctx:
                return work(ctx, state.pki)
        finally:
            # After the commit (or the rollback): invalidating earlier would let a
            # verification running meanwhile read and keep the old CRLs.
            if changes_trust:
                state.invalidate_trust()

    try:
        return await run_in_threadpool(run)
    except TongbanError as exc:
        return signing_problem(exc)


def _record(ctx: Context, admin: dict[str, Any], event: str, seal: Seal, **details: Any) -> None:
    ctx.audit.record(
        ctx.session,
        event,
        actor=_actor(admin),
        subject=seal.id,
        client_id=admin["client_id"],
        source=ctx.source,
        details={"seal_name": seal.name, "department_name": seal.department_name, **details},
    )


# -- seals ------------------------------------------------------------------------------


@router.get("/seals", response_model=list[SealOut], summary="List seals")
async def list_seals(
    request: Request,
    admin: Admin,
    department_uscc: Annotated[str | None, Query(max_length=18)] = None,
    status: Annotated[SealStatus | None, Query()] = None,
) -> Any:
    def work(ctx: Context, pki: Pki) -> list[SealOut]:
        rows = seals.list_seals(
            ctx.session,
            department_uscc=department_uscc.strip().upper() if department_uscc else None,
            status=status,
        )
        return [_seal_out(s) for s in rows]

    return await _act(request, work)


@router.post(
    "/seals",
    response_model=SealOut,
    status_code=201,
    summary="Issue a seal: a new key and its certificate from the issuing CA",
)
async def create_seal(request: Request, body: SealIn, admin: Admin) -> Any:
    def work(ctx: Context, pki: Pki) -> SealOut:
        seal = seals.create_seal(
            ctx.session,
            ctx.clock,
            pki,
            department_uscc=body.department_uscc,
            department_name=body.department_name,
            name=body.name,
            seal_type=body.type,
            purpose=body.purpose,
            backend=body.backend,
            alg=body.alg,
            lifetime=timedelta(days=body.days) if body.days else None,
            actor=_actor(admin),
        )
        _record(
            ctx,
            admin,
            "seal.created",
            seal,
            type=seal.seal_type,
            certificate_serial=seal.certificate_serial,
            backend=seal.key_backend,
            alg=seal.alg,
        )
        return _seal_out(seal)

    out = await _act(request, work)
    if isinstance(out, Response):
        return out
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=201,
        headers={**JSON_HEADERS, "Location": f"/admin/v1/seals/{out.id}"},
    )


@router.get(
    "/seals/{seal_id}",
    response_model=SealDetailOut,
    summary="A seal with its certificates and the history of admin actions",
)
async def get_seal(request: Request, seal_id: str, admin: Admin) -> Any:
    def work(ctx: Context, pki: Pki) -> SealDetailOut:
        seal = seals.get_seal(ctx.session, seal_id)
        certificates = ctx.session.execute(
            select(IssuedCertificate)
            .where(IssuedCertificate.holder == seal.id, IssuedCertificate.purpose == "seal")
            .order_by(IssuedCertificate.created_at)
        ).scalars()
        return SealDetailOut(
            **_seal_out(seal).model_dump(),
            certificates=[
                SealCertificateOut(
                    serial=c.serial,
                    status=c.status,
                    current=c.serial == seal.certificate_serial,
                    not_before=utc(c.not_before),
                    not_after=utc(c.not_after),
                    revoked_at=utc(c.revoked_at) if c.revoked_at else None,
                    revocation_reason=c.revocation_reason,
                )
                for c in certificates
            ],
            events=[
                SealEventOut(event=e.event, actor=e.actor, at=utc(e.at), detail=e.detail)
                for e in seals.seal_events(ctx.session, seal.id)
            ],
        )

    return await _act(request, work)


@router.post(
    "/seals/{seal_id}/suspend",
    response_model=SealOut,
    summary="Suspend a seal (certificateHold on the CRL: verifiers answer TRY_LATER)",
)
async def suspend_seal(
    request: Request, seal_id: str, admin: Admin, body: SuspendIn | None = None
) -> Any:
    reason = body.reason.strip() if body else ""

    def work(ctx: Context, pki: Pki) -> SealOut:
        seal = seals.suspend_seal(
            ctx.session, ctx.clock, pki, seal_id, actor=_actor(admin), reason=reason
        )
        _record(ctx, admin, "seal.suspended", seal, reason=reason)
        return _seal_out(seal)

    return await _act(request, work, changes_trust=True)


@router.post(
    "/seals/{seal_id}/reinstate",
    response_model=SealOut,
    summary="Lift a suspension (the hold leaves the CRL)",
)
async def reinstate_seal(request: Request, seal_id: str, admin: Admin) -> Any:
    def work(ctx: Context, pki: Pki) -> SealOut:
        seal = seals.reinstate_seal(ctx.session, ctx.clock, pki, seal_id, actor=_actor(admin))
        _record(ctx, admin, "seal.reinstated", seal)
        return _seal_out(seal)

    return await _act(request, work, changes_trust=True)


@router.post(
    "/seals/{seal_id}/revoke",
    response_model=SealOut,
    summary="Revoke a seal for good: its certificates go on the CRL, its key is destroyed",
)
async def revoke_seal(
    request: Request, seal_id: str, admin: Admin, body: RevokeIn | None = None
) -> Any:
    reason = body.reason if body else "cessation_of_operation"

    def work(ctx: Context, pki: Pki) -> SealOut:
        already = seals.get_seal(ctx.session, seal_id).status == "revoked"
        seal = seals.revoke_seal(
            ctx.session, ctx.clock, pki, seal_id, reason=reason, actor=_actor(admin)
        )
        if not already:  # revoking twice changes nothing and records nothing
            _record(ctx, admin, "seal.revoked", seal, reason=reason)
        return _seal_out(seal)

    return await _act(request, work, changes_trust=True)


@router.post(
    "/seals/{seal_id}/renew",
    response_model=SealOut,
    summary="Renew a seal: a new key and certificate (documents sealed before stay valid)",
)
async def renew_seal(
    request: Request, seal_id: str, admin: Admin, body: RenewIn | None = None
) -> Any:
    days = body.days if body else None

    def work(ctx: Context, pki: Pki) -> SealOut:
        previous = seals.get_seal(ctx.session, seal_id).certificate_serial
        seal = seals.renew_seal(
            ctx.session,
            ctx.clock,
            pki,
            seal_id,
            lifetime=timedelta(days=days) if days else None,
            actor=_actor(admin),
        )
        # The audit vocabulary has no `seal.renewed`: a renewal is the issue of the seal's
        # next certificate.
        _record(
            ctx,
            admin,
            "certificate.issued",
            seal,
            purpose="seal",
            renewal=True,
            certificate_serial=seal.certificate_serial,
            previous_serial=previous,
        )
        return _seal_out(seal)

    return await _act(request, work, changes_trust=True)


async def _seal_row(request: Request, seal_id: str) -> Seal | Response:
    def work(ctx: Context, pki: Pki) -> Seal:
        return seals.get_seal(ctx.session, seal_id)

    return await _act(request, work)


@router.get(
    "/seals/{seal_id}/image.svg",
    summary="The seal's red stamp as SVG",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def seal_image_svg(
    request: Request,
    seal_id: str,
    admin: Admin,
    size: Annotated[int, Query(ge=64, le=2048)] = 240,
) -> Response:
    seal = await _seal_row(request, seal_id)
    if isinstance(seal, Response):
        return seal
    svg = seal_svg(seal.department_name, seal.purpose, size=size)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get(
    "/seals/{seal_id}/image.png",
    summary="The seal's red stamp as a transparent PNG",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def seal_image_png(
    request: Request,
    seal_id: str,
    admin: Admin,
    size: Annotated[int, Query(ge=64, le=2048)] = 480,
) -> Response:
    seal = await _seal_row(request, seal_id)
    if isinstance(seal, Response):
        return seal
    try:
        png = await run_in_threadpool(seal_png, seal.department_name, seal.purpose, size=size)
    except TongbanError as exc:  # no CJK font installed: the server's set-up, not the call
        return problem(503, "Seal image unavailable", exc.description)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- the PKI ----------------------------------------------------------------------------


@router.get(
    "/pki",
    response_model=PkiStatusOut,
    summary="The PKI: root and issuing CA, where their keys are, their CRLs",
)
async def pki_status(request: Request, admin: Admin) -> Any:
    def work(ctx: Context, pki: Pki) -> PkiStatusOut:
        summary = pki.summary(ctx.session)
        return PkiStatusOut(
            initialised=pki.is_initialised(ctx.session),
            authorities=[AuthorityOut.model_validate(a) for a in summary["authorities"]],
        )

    return await _act(request, work)


__all__ = ["router"]
