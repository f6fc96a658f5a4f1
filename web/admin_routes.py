"""The admin REST API (`/admin/v1`): clients, users, keys. Access tokens with the `admin`
scope (client_credentials) only; errors are RFC 9457 problem details."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from audit import list_events
from idp.models import Account, Client
from keys.keyring import key_summary
from kit.errors import NotFound
from web.auth import require_scope
from web.http import JSON_HEADERS, unit_of_work
from web.runtime import Runtime

router = APIRouter(prefix="/admin/v1", tags=["admin"])
Admin = Annotated[dict[str, Any], Depends(require_scope("admin"))]


class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    backchannel_logout_uri: str | None = None
    auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"] = (
        "client_secret_basic"
    )
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    scopes: list[str] = Field(default_factory=list, max_length=20)
    grant_types: list[str] = Field(default_factory=list, max_length=3)
    resources: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Resource servers (RFC 8707) the client may ask tokens for",
    )
    id_token_alg: Literal["ES256", "RS256"] = "ES256"
    statutory_purpose: str | None = Field(default=None, max_length=500)
    department_uscc: str | None = None


class ClientOut(BaseModel):
    client_id: str
    name: str
    auth_method: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None
    scopes: list[str]
    grant_types: list[str]
    resources: list[str]
    id_token_alg: str
    department_uscc: str | None
    client_secret: str | None = Field(default=None, description="Shown once, at creation")


class UserIn(BaseModel):
    id_number: str = Field(min_length=18, max_length=18)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = None
    password: str = Field(min_length=8, max_length=256)
    totp: bool = False


class UserOut(BaseModel):
    account_id: str
    name: str
    id_number_masked: str
    status: str
    totp: bool
    totp_secret: str | None = Field(default=None, description="Shown once, at creation")


class KeyOut(BaseModel):
    kid: str
    alg: str
    state: str
    created_at: str
    activate_at: str
    retire_at: str | None


def _client_out(c: Client, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=c.client_id,
        name=c.name,
        auth_method=c.auth_method,
        redirect_uris=c.redirect_uris,
        post_logout_redirect_uris=c.post_logout_redirect_uris,
        backchannel_logout_uri=c.backchannel_logout_uri,
        scopes=c.scopes,
        grant_types=c.grant_types,
        resources=c.resources or [],
        id_token_alg=c.id_token_alg,
        department_uscc=c.department_uscc,
        client_secret=secret,
    )


def _rt(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("/clients", response_model=list[ClientOut], summary="List clients")
async def list_clients(request: Request, admin: Admin) -> Any:
    def work() -> list[ClientOut]:
        with unit_of_work(_rt(request), request) as ctx:
            return [_client_out(c) for c in ctx.clients.list()]

    return await run_in_threadpool(work)


@router.post("/clients", response_model=ClientOut, status_code=201, summary="Register a client")
async def create_client(request: Request, body: ClientIn, admin: Admin) -> Any:
    def work() -> ClientOut:
        with unit_of_work(_rt(request), request) as ctx:
            reg = ctx.clients.register(**body.model_dump(), actor=f"client:{admin['client_id']}")
            return _client_out(reg.client, reg.secret)

    return await run_in_threadpool(work)


@router.get("/clients/{client_id}", response_model=ClientOut, summary="Get a client")
async def get_client(request: Request, client_id: str, admin: Admin) -> Any:
    def work() -> ClientOut:
        with unit_of_work(_rt(request), request) as ctx:
            row = ctx.session.get(Client, client_id)
            if row is None:
                raise NotFound("no such client")
            return _client_out(row)

    return await run_in_threadpool(work)


@router.delete("/clients/{client_id}", status_code=204, summary="Remove a client")
async def delete_client(request: Request, client_id: str, admin: Admin) -> Response:
    def work() -> bool:
        with unit_of_work(_rt(request), request) as ctx:
            return ctx.clients.remove(client_id, actor=f"client:{admin['client_id']}")

    if not await run_in_threadpool(work):
        raise NotFound("no such client")
    return Response(status_code=204)


def _user_out(ctx: Any, account: Account, secret: str | None = None) -> UserOut:
    return UserOut(
        account_id=account.id,
        name=account.name,
        id_number_masked=ctx.accounts.masked_id_number(account),
        status=account.status,
        totp=account.totp_secret_enc is not None,
        totp_secret=secret,
    )


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a citizen")
async def create_user(request: Request, body: UserIn, admin: Admin) -> Any:
    def work() -> UserOut:
        with unit_of_work(_rt(request), request) as ctx:
            new = ctx.accounts.create(
                id_number=body.id_number,
                name=body.name,
                phone=body.phone,
                password=body.password,
                verified=True,
                totp=body.totp,
                actor=f"client:{admin['client_id']}",
            )
            return _user_out(ctx, new.account, new.totp_secret)

    return await run_in_threadpool(work)


@router.get("/users/{account_id}", response_model=UserOut, summary="Get a citizen")
async def get_user(request: Request, account_id: str, admin: Admin) -> Any:
    def work() -> UserOut:
        with unit_of_work(_rt(request), request) as ctx:
            account = ctx.session.get(Account, account_id)
            if account is None:
                raise NotFound("no such account")
            return _user_out(ctx, account)

    return await run_in_threadpool(work)


class StatusIn(BaseModel):
    status: Literal["active", "disabled"]


@router.post(
    "/users/{account_id}/status",
    response_model=UserOut,
    summary="Disable or enable an account (disabling ends its sessions)",
)
async def set_user_status(request: Request, account_id: str, body: StatusIn, admin: Admin) -> Any:
    from idp.logout import end_all_sessions

    def work() -> UserOut:
        with unit_of_work(_rt(request), request) as ctx:
            account = ctx.session.get(Account, account_id)
            if account is None:
                raise NotFound("no such account")
            account.status = body.status
            if body.status == "disabled":
                end_all_sessions(ctx, account.id, reason="account_disabled")
                ctx.tokens.revoke_account_grants(account.id, None, "account_disabled")
            ctx.audit.record(
                ctx.session,
                f"account.{body.status.replace('active', 'enabled')}",
                actor=f"client:{admin['client_id']}",
                subject=account.id,
            )
            return _user_out(ctx, account)

    out = await run_in_threadpool(work)
    request.app.state.deliveries.kick()
    return out


@router.get("/keys", response_model=list[KeyOut], summary="List signing keys, newest first")
async def list_keys(request: Request, admin: Admin) -> Any:
    runtime = _rt(request)

    def work() -> list[KeyOut]:
        with runtime.factory() as session:
            return [
                KeyOut(**{k: v for k, v in key_summary(r).items() if k in KeyOut.model_fields})
                for r in runtime.keyring.list(session)
            ]

    return await run_in_threadpool(work)


@router.post("/keys/rotate", summary="Start a key rotation", status_code=202)
async def rotate_keys(request: Request, admin: Admin, immediate: bool = False) -> JSONResponse:
    runtime = _rt(request)

    def work() -> list[str]:
        with runtime.factory.begin() as session:
            kids = runtime.keyring.rotate(session, runtime.clock.now(), immediate=immediate)
            runtime.audit.record(
                session,
                "key.rotated",
                actor=f"client:{admin['client_id']}",
                details={"new": kids, "immediate": immediate},
            )
            return kids

    kids = await run_in_threadpool(work)
    return JSONResponse(
        {"new_keys": kids, "immediate": immediate}, status_code=202, headers=JSON_HEADERS
    )


class AuditEventOut(BaseModel):
    position: int | None = Field(description="Place in the Merkle tree; null while pending")
    event_id: str
    time: str
    event: str
    actor: str | None
    subject: str | None
    client_id: str | None
    source: str | None
    result: str
    details: dict[str, Any]


class AuditPageOut(BaseModel):
    events: list[AuditEventOut]
    next_before: int | None = Field(description="Pass as `before` for the next, older page")


@router.get(
    "/audit/events",
    response_model=AuditPageOut,
    summary="List audit events, newest first, with filters",
)
async def audit_events(
    request: Request,
    admin: Admin,
    prefix: Annotated[str | None, Query(max_length=64, description="e.g. `login.`")] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    result: Annotated[Literal["success", "failure", "error"] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    include_pending: bool = False,
) -> Any:
    runtime = _rt(request)

    def work() -> AuditPageOut:
        with runtime.factory() as session:
            page = list_events(
                session,
                prefix=prefix,
                actor=actor,
                subject=subject,
                client_id=client_id,
                result=result,
                since=since,
                until=until,
                before=before,
                limit=limit,
                include_pending=include_pending,
            )
        return AuditPageOut(
            events=[
                AuditEventOut(
                    position=e.position,
                    event_id=e.event_id,
                    time=e.time.isoformat(),
                    event=e.event,
                    actor=e.actor,
                    subject=e.subject,
                    client_id=e.client_id,
                    source=e.source,
                    result=e.result,
                    details=e.details,
                )
                for e in page.events
            ],
            next_before=page.next_before,
        )

    return await run_in_threadpool(work)
