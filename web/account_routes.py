"""The citizen's account page: profile (ID number masked), active sessions with "log out
everywhere", authorised department systems with revoke, password change (re-authenticates
first, ASVS 7.5.1, and ends the other sessions, 7.4.3) and TOTP enrolment."""

from __future__ import annotations

import base64
import io
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from idp.authorize import revoke_consent
from idp.context import Context
from idp.errors import IdpError, LoginFailed
from idp.logout import end_all_sessions
from idp.models import Account, Client, Consent, SsoSession
from idp.pii import mask_phone
from idp.totp import matching_step, new_secret, provisioning_uri
from keys.errors import KeysError
from web.browser import Browser, see_other
from web.http import form_pairs, unit_of_work
from web.i18n import ACR_TEXT, Translator
from web.runtime import Runtime

router = APIRouter(include_in_schema=False)


def _parts(request: Request) -> tuple[Runtime, Browser]:
    return request.app.state.runtime, request.app.state.browser


def _current(ctx: Context, cookie: str | None) -> tuple[SsoSession, Account] | None:
    sso = ctx.sessions.from_cookie(cookie)
    account = ctx.session.get(Account, sso.account_id) if sso else None
    if sso is None or account is None or account.status != "active":
        return None
    return sso, account


def _page_data(
    ctx: Context, sso: SsoSession, account: Account, t: Translator, history: list[dict[str, str]]
) -> dict[str, Any]:
    phone = ctx.accounts.phone(account)
    consents = ctx.session.execute(
        select(Consent, Client.name)
        .join(Client, Client.client_id == Consent.client_id)
        .where(Consent.account_id == account.id)
        .order_by(Consent.granted_at.desc())
    ).all()
    return {
        "name": account.name,
        "masked_id": ctx.accounts.masked_id_number(account),
        "masked_phone": mask_phone(phone) if phone else None,
        "acr_text": t.pick(ACR_TEXT.get(sso.acr, (sso.acr, sso.acr))),
        "sessions": [
            {
                "created": s.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "agent": (s.user_agent or "")[:80],
                "current": s.id == sso.id,
            }
            for s in ctx.sessions.live_for_account(account.id)
        ],
        "consents": [
            {"client_id": c.client_id, "name": name, "scopes": " ".join(c.scopes)}
            for c, name in consents
        ],
        "totp_on": ctx.accounts.has_second_factor(account),
        "enterprises": ctx.enterprises.for_agent(account.id),
        "history": history,
    }


def _history(
    runtime: Runtime, ctx: Context, account: Account, t: Translator
) -> list[dict[str, str]]:
    return runtime.holder_history(ctx.session, account.id, t.locale)


async def _show(request: Request, **extra: Any) -> Response:
    runtime, b = _parts(request)
    cookie = b.session_value(request)
    t = b.translator(request)

    def work() -> dict[str, Any] | None:
        with unit_of_work(runtime, request) as ctx:
            current = _current(ctx, cookie)
            if current is None:
                return None
            sso, account = current
            return _page_data(ctx, sso, account, t, _history(runtime, ctx, account, t))

    data = await run_in_threadpool(work)
    if data is None:
        return see_other("/login")
    return b.render(request, "account.html", **data, **extra)


@router.get("/account")
async def account_page(request: Request, done: str = "") -> Response:
    _, b = _parts(request)
    t = b.translator(request)
    messages = {
        "password": t.pick(
            (
                "密码已修改，其他设备已退出登录。",
                "Password changed; other sessions were logged out.",
            )
        ),
        "revoked": t.pick(("已撤销授权。", "Access revoked.")),
        "totp": t.pick(("动态验证码已启用。", "One-time codes are on.")),
    }
    return await _show(request, message=messages.get(done))


async def _post(request: Request) -> tuple[Runtime, Browser, dict[str, str], str | None] | Response:
    runtime, b = _parts(request)
    form = dict(await form_pairs(request))
    if not b.csrf_ok(request, form):
        return see_other("/account")
    return runtime, b, form, b.session_value(request)


@router.post("/account/logout-everywhere")
async def logout_everywhere(request: Request) -> Response:
    parts = await _post(request)
    if isinstance(parts, Response):
        return parts
    runtime, b, _form, cookie = parts

    def work() -> bool:
        with unit_of_work(runtime, request) as ctx:
            current = _current(ctx, cookie)
            if current is None:
                return False
            end_all_sessions(ctx, current[1].id, reason="logout_everywhere")
            return True

    await run_in_threadpool(work)
    request.app.state.deliveries.kick()
    response = see_other("/logged-out")
    b.clear_session(response)
    return response


@router.post("/account/consents/revoke")
async def revoke(request: Request) -> Response:
    parts = await _post(request)
    if isinstance(parts, Response):
        return parts
    runtime, _b, form, cookie = parts

    def work() -> None:
        with unit_of_work(runtime, request) as ctx:
            current = _current(ctx, cookie)
            if current is not None and form.get("client_id"):
                revoke_consent(ctx, current[1], form["client_id"][:64])

    await run_in_threadpool(work)
    return see_other("/account?done=revoked")


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    parts = await _post(request)
    if isinstance(parts, Response):
        return parts
    runtime, b, form, cookie = parts
    t = b.translator(request)

    def work() -> str | None:
        with unit_of_work(runtime, request) as ctx:
            current = _current(ctx, cookie)
            if current is None:
                return "login"
            sso, account = current
            username = ctx.accounts.id_number(account)
            try:
                ctx.accounts.authenticate_password(
                    username, form.get("current_password", ""), source=ctx.source
                )
                ctx.accounts.set_password(account, form.get("new_password", ""))
            except (LoginFailed, IdpError) as exc:
                return t.pick((exc.zh, exc.description))
            end_all_sessions(ctx, account.id, reason="password_changed", keep=sso.id)
            return None

    error = await run_in_threadpool(work)
    if error == "login":
        return see_other("/login")
    if error:
        return await _show(request, error=error)
    request.app.state.deliveries.kick()
    return see_other("/account?done=password")


PENDING_SECONDS = 600


@router.post("/account/totp/start")
async def totp_start(request: Request) -> Response:
    """Turn on one-time codes. Re-authenticates with the password first (ASVS 7.5.1); a
    second factor already on is not replaced here, so a borrowed session cannot swap it."""
    parts = await _post(request)
    if isinstance(parts, Response):
        return parts
    runtime, b, form, cookie = parts
    t = b.translator(request)

    def work() -> dict[str, Any] | str | None:
        with unit_of_work(runtime, request) as ctx:
            current = _current(ctx, cookie)
            if current is None:
                return None
            account = current[1]
            if ctx.accounts.has_second_factor(account):
                return t.pick(("动态验证码已启用。", "One-time codes are already on."))
            try:
                ctx.accounts.authenticate_password(
                    ctx.accounts.id_number(account),
                    form.get("current_password", ""),
                    source=ctx.source,
                )
            except LoginFailed as exc:
                return t.pick((exc.zh, exc.description))
            secret = new_secret()
            uri = provisioning_uri(secret, label=account.name, issuer="通办 Tongban")
            buf = io.BytesIO()
            segno.make(uri, error="m").save(buf, kind="svg", scale=4)
            qr = "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()
            issued = int(ctx.clock.now().timestamp())
            pending = ctx.services.pii.pending.encrypt(f"{account.id}:{issued}:{secret}")
            return {"pending": pending, "pending_secret": secret, "qr": qr}

    data = await run_in_threadpool(work)
    if data is None:
        return see_other("/login")
    if isinstance(data, str):
        return await _show(request, error=data)
    return await _show(request, **data)


@router.post("/account/totp/confirm")
async def totp_confirm(request: Request) -> Response:
    parts = await _post(request)
    if isinstance(parts, Response):
        return parts
    runtime, b, form, cookie = parts
    t = b.translator(request)
    restart = t.pick(("请重新开始设置。", "Please start the set-up again."))

    def work() -> list[str] | str:
        with unit_of_work(runtime, request) as ctx:
            current = _current(ctx, cookie)
            if current is None:
                return "login"
            account = current[1]
            if ctx.accounts.has_second_factor(account):
                return restart
            try:
                owner, issued, secret = ctx.services.pii.pending.decrypt(
                    form.get("pending", "")
                ).split(":", 2)
            except (KeysError, ValueError):
                return restart
            now = ctx.clock.now()
            if owner != account.id or int(now.timestamp()) - int(issued) > PENDING_SECONDS:
                return restart
            step = matching_step(secret, form.get("otp", ""), now=now, last_step=0)
            if step is None:
                return t.pick(
                    (
                        "验证码不正确，请重新开始设置。",
                        "The code is wrong; please start the set-up again.",
                    )
                )
            _, codes = ctx.accounts.enrol_totp(account, secret=secret, used_step=step)
            return codes

    result = await run_in_threadpool(work)
    if result == "login":
        return see_other("/login")
    if isinstance(result, str):
        return await _show(request, error=result)
    return await _show(
        request,
        recovery_codes=result,
        message=t.pick(("动态验证码已启用。", "One-time codes are on.")),
    )
