"""Login, second factor and consent pages. Plain HTML forms (no JavaScript needed), a CSRF
token on every form, 303 after every POST, one generic message for every login failure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from idp.accounts import ACR_MFA, ACR_PASSWORD
from idp.authorize import Outcome, consent_scopes, deliver, record_acting, record_consent
from idp.claims import SCOPE_TEXT
from idp.context import Context
from idp.errors import LoginFailed, SecondFactorFailed
from idp.models import Account, Interaction, SsoSession
from idp.signin import establish_session
from idp.throttle import Throttle
from web.browser import Browser, see_other
from web.http import form_pairs, unit_of_work
from web.oidc_routes import (
    answer_step,
    continue_interaction,
    login_page_fields,
    too_many_logins,
)
from web.runtime import Runtime

router = APIRouter(include_in_schema=False)


def _parts(request: Request) -> tuple[Runtime, Browser, Throttle]:
    s = request.app.state
    return s.runtime, s.browser, s.throttle


def expired_page(request: Request, b: Browser, secret: str) -> Response:
    """The page for a login step that no longer exists, or not for this browser."""
    t = b.translator(request)
    return b.render(
        request,
        "error.html",
        status=400,
        secret=secret,
        message=t.pick(
            (
                "登录请求已过期或不属于本浏览器，请返回原系统重新登录。",
                "The login request expired or belongs to another browser; start again from the "
                "department system.",
            )
        ),
    )


def _bind(row: Interaction, account_id: str) -> None:
    """The interaction now belongs to `account_id`; what another account did in it
    (consent, the acting choice) does not carry over (a shared browser)."""
    if row.account_id != account_id:
        row.consent_done = row.acting_done = False
    row.account_id = account_id


def _at_step(
    ctx: Context, interaction: str | None, stage: str, *, secret: str, cookie: str | None
) -> tuple[Interaction, SsoSession] | None:
    """The interaction of this browser waiting at `stage`, and the live session whose
    citizen is to answer it; None when either is missing."""
    row = ctx.interactions.load(interaction, browser_secret=secret)
    sso = ctx.sessions.from_cookie(cookie)
    if row is None or row.stage != stage or sso is None:
        return None
    return row, sso


def _client_name(ctx: Context, row: Interaction) -> str | None:
    client = ctx.clients.get(str(row.params.get("client_id", "")))
    return client.name if client else None


@router.get("/login")
async def login_page(request: Request) -> Response:
    # served by `web.page_front` too, so it reads its query itself
    interaction = request.query_params.get("interaction", "")
    runtime, b, throttle = _parts(request)
    secret, new_cookie = b.secret(request)
    limit = runtime.settings.interactions_per_address_per_minute

    def work() -> dict[str, Any] | None:
        with unit_of_work(runtime, request) as ctx:
            row = ctx.interactions.load(interaction, browser_secret=secret)
            if row is None:
                if interaction:
                    return None
                # A direct visit: log in to the account page. It stores an interaction,
                # so it counts against the address like a login a client starts.
                now, key = ctx.clock.now(), f"interaction:{ctx.source}"
                if throttle.failures(ctx.session, key, now) >= limit:
                    return {"retry": throttle.retry_after(now)}
                throttle.fail(ctx.session, key, now)
                row = ctx.interactions.start(
                    {"_return": "/account"}, browser_secret=secret, stage="login"
                )
            return login_page_fields(row, _client_name(ctx, row))

    data = await run_in_threadpool(work)
    if data is None:
        return expired_page(request, b, secret)
    if "retry" in data:
        return too_many_logins(request, secret, data["retry"])
    return b.render(request, "login.html", secret=secret, new_secret_cookie=new_cookie, **data)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    runtime, b, throttle = _parts(request)
    form = dict(await form_pairs(request))
    secret, _ = b.secret(request)
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return b.render(
            request,
            "error.html",
            status=400,
            secret=secret,
            message=t.pick(
                ("页面已失效，请重新打开登录页。", "The page expired; open the login page again.")
            ),
        )
    username = form.get("username", "").strip()
    password = form.get("password", "")
    old_cookie = b.session_value(request)

    def work() -> dict[str, Any]:
        with unit_of_work(runtime, request) as ctx:
            row = ctx.interactions.load(form.get("interaction"), browser_secret=secret)
            if row is None:
                return {"kind": "expired"}
            now = ctx.clock.now()
            address_key = f"login:{ctx.source}"
            limit = ctx.config.failures_per_address_per_minute
            if throttle.failures(ctx.session, address_key, now) >= limit:
                return {"kind": "throttled", "retry": throttle.retry_after(now), "row": row.id}
            try:
                account = ctx.accounts.authenticate_password(username, password, source=ctx.source)
            except LoginFailed as exc:
                throttle.fail(ctx.session, address_key, now)
                return {
                    "kind": "failed",
                    "message": t.pick((exc.zh, exc.description)),
                    "row": row.id,
                }
            if ctx.accounts.has_second_factor(account):
                _bind(row, account.id)
                row.stage = "otp"
                return {"kind": "otp", "row": row.id}
            # the session object is kept: the unit of work holds it only weakly, and
            # dropping it would read it back from the database
            sso, cookie = establish_session(
                ctx, account, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=old_cookie
            )
            _bind(row, account.id)
            row.login_done = True
            outcome = continue_interaction(ctx, row, sso=sso, browser_secret=secret)
            return {"kind": "done", "outcome": outcome, "cookie": cookie}

    result = await run_in_threadpool(work)
    kind = result["kind"]
    if kind == "expired":
        return expired_page(request, b, secret)
    if kind in ("failed", "throttled"):
        message = result.get("message") or t.pick(
            ("尝试次数过多，请稍后再试。", "Too many attempts; try again later.")
        )
        status = 401 if kind == "failed" else 429
        response = b.render(
            request,
            "login.html",
            status=status,
            secret=secret,
            interaction=result["row"],
            error=message,
            username=username,
            back_path=f"/login?interaction={result['row']}",
        )
        if kind == "throttled":
            response.headers["Retry-After"] = str(result["retry"])
        return response
    if kind == "otp":
        return see_other(f"/login/otp?interaction={result['row']}")
    return answer_step(request, result["outcome"], secret=secret, session_cookie=result["cookie"])


@router.get("/login/otp")
async def otp_page(request: Request, interaction: str = "") -> Response:
    runtime, b, _ = _parts(request)
    secret, _ = b.secret(request)

    def work() -> tuple[bool, str | None]:
        with unit_of_work(runtime, request) as ctx:
            row = ctx.interactions.load(interaction, browser_secret=secret)
            if row is None or row.stage != "otp" or row.account_id is None:
                return False, None
            return True, row.params.get("ui_locales")

    ok, ui_locales = await run_in_threadpool(work)
    if not ok:
        return expired_page(request, b, secret)
    return b.render(
        request, "otp.html", secret=secret, interaction=interaction, ui_locales=ui_locales
    )


@router.post("/login/otp")
async def otp_submit(request: Request) -> Response:
    runtime, b, throttle = _parts(request)
    form = dict(await form_pairs(request))
    secret, _ = b.secret(request)
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return expired_page(request, b, secret)
    old_cookie = b.session_value(request)

    def work() -> dict[str, Any]:
        with unit_of_work(runtime, request) as ctx:
            row = ctx.interactions.load(form.get("interaction"), browser_secret=secret)
            if row is None or row.stage != "otp" or row.account_id is None:
                return {"kind": "expired"}
            account = ctx.session.get(Account, row.account_id)
            if account is None or account.status != "active":
                return {"kind": "expired"}
            now = ctx.clock.now()
            key = f"otp:{account.id}"
            if throttle.failures(ctx.session, key, now) >= 10:
                return {
                    "kind": "failed",
                    "row": row.id,
                    "status": 429,
                    "message": t.pick(
                        ("尝试次数过多，请稍后再试。", "Too many attempts; try again later.")
                    ),
                }
            try:
                ctx.accounts.verify_second_factor(account, form.get("otp", ""))
            except SecondFactorFailed as exc:
                throttle.fail(ctx.session, key, now)
                return {
                    "kind": "failed",
                    "row": row.id,
                    "status": 401,
                    "message": t.pick((exc.zh, exc.description)),
                }
            sso, cookie = establish_session(
                ctx, account, acr=ACR_MFA, amr=["pwd", "otp"], current_cookie=old_cookie
            )
            row.login_done = True
            outcome = continue_interaction(ctx, row, sso=sso, browser_secret=secret)
            return {"kind": "done", "outcome": outcome, "cookie": cookie}

    result = await run_in_threadpool(work)
    if result["kind"] == "expired":
        return expired_page(request, b, secret)
    if result["kind"] == "failed":
        return b.render(
            request,
            "otp.html",
            status=result["status"],
            secret=secret,
            interaction=result["row"],
            error=result["message"],
        )
    return answer_step(request, result["outcome"], secret=secret, session_cookie=result["cookie"])


@router.get("/consent")
async def consent_page(request: Request, interaction: str = "") -> Response:
    runtime, b, _ = _parts(request)
    secret, _ = b.secret(request)
    t = b.translator(request)
    cookie = b.session_value(request)

    def work() -> dict[str, Any] | None:
        with unit_of_work(runtime, request) as ctx:
            found = _at_step(ctx, interaction, "consent", secret=secret, cookie=cookie)
            if found is None:
                return None
            row, _sso = found
            client, scopes = consent_scopes(ctx, row)
            if client is None:
                return None
            texts = [t.pick(SCOPE_TEXT[s]) for s in scopes if s in SCOPE_TEXT]
            purpose = client.statutory_purpose if "id_number" in scopes else None
            return {
                "client_name": client.name,
                "scope_texts": texts,
                "purpose": purpose,
                "ui_locales": row.params.get("ui_locales"),
            }

    data = await run_in_threadpool(work)
    if data is None:
        return expired_page(request, b, secret)
    return b.render(request, "consent.html", secret=secret, interaction=interaction, **data)


@router.post("/consent")
async def consent_submit(request: Request) -> Response:
    runtime, b, _ = _parts(request)
    form = dict(await form_pairs(request))
    secret, _ = b.secret(request)
    if not b.csrf_ok(request, form):
        return expired_page(request, b, secret)
    cookie = b.session_value(request)
    decision = form.get("decision")

    def work() -> str | Outcome | None:
        with unit_of_work(runtime, request) as ctx:
            found = _at_step(ctx, form.get("interaction"), "consent", secret=secret, cookie=cookie)
            if found is None:
                return None
            row, sso = found
            client, scopes = consent_scopes(ctx, row)
            account = ctx.session.get(Account, sso.account_id)
            if client is None or account is None:
                return None
            if decision == "allow":
                record_consent(ctx, account, client, scopes)
                row.consent_done, row.account_id = True, account.id
                return continue_interaction(ctx, row, sso=sso, browser_secret=secret)
            # deny: tell the client, with its state (RFC 6749 §4.1.2.1)
            ctx.audit.record(
                ctx.session,
                "consent.denied",
                actor=f"user:{account.id}",
                subject=account.id,
                client_id=client.client_id,
            )
            params = [
                ("error", "access_denied"),
                ("error_description", "The user denied the request."),
            ]
            if row.params.get("state"):
                params.append(("state", str(row.params["state"])))
            outcome = deliver(
                ctx,
                str(row.params["redirect_uri"]),
                params,
                str(row.params.get("response_mode") or "query"),
            )
            ctx.interactions.finish(row)
            return outcome

    target = await run_in_threadpool(work)
    if target is None:
        return expired_page(request, b, secret)
    return answer_step(request, target, secret=secret)


@router.get("/act-for")
async def act_for_page(request: Request, interaction: str = "") -> Response:
    runtime, b, _ = _parts(request)
    secret, _ = b.secret(request)
    cookie = b.session_value(request)

    def work() -> dict[str, Any] | None:
        with unit_of_work(runtime, request) as ctx:
            found = _at_step(ctx, interaction, "act_for", secret=secret, cookie=cookie)
            if found is None:
                return None
            row, sso = found
            return {
                "client_name": _client_name(ctx, row),
                "enterprises": ctx.enterprises.for_agent(sso.account_id),
                "ui_locales": row.params.get("ui_locales"),
            }

    data = await run_in_threadpool(work)
    if data is None:
        return expired_page(request, b, secret)
    return b.render(request, "act_for.html", secret=secret, interaction=interaction, **data)


@router.post("/act-for")
async def act_for_submit(request: Request) -> Response:
    runtime, b, _ = _parts(request)
    form = dict(await form_pairs(request))
    secret, _ = b.secret(request)
    if not b.csrf_ok(request, form):
        return expired_page(request, b, secret)
    cookie = b.session_value(request)
    choice = form.get("act_for", "")

    def work() -> Outcome | str | None:
        with unit_of_work(runtime, request) as ctx:
            found = _at_step(ctx, form.get("interaction"), "act_for", secret=secret, cookie=cookie)
            if found is None:
                return None
            row, sso = found
            account = ctx.session.get(Account, sso.account_id)
            if account is None:
                return None
            uscc = None if choice == "self" else choice.strip().upper()
            if not record_acting(ctx, sso, account, uscc):
                return None
            row.acting_done, row.account_id = True, account.id
            return continue_interaction(ctx, row, sso=sso, browser_secret=secret)

    target = await run_in_threadpool(work)
    if target is None:
        return expired_page(request, b, secret)
    return answer_step(request, target, secret=secret)


@router.get("/logged-out")
async def logged_out(request: Request) -> Response:
    _, b, _ = _parts(request)
    return b.render(request, "logged_out.html")


@router.get("/lang")
async def switch_language(request: Request, to: str = "zh-CN", back: str = "/") -> Response:
    _, b, _ = _parts(request)
    # Only same-site relative paths: never an open redirector (RFC 9700 §4.11).
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    response = see_other(target)
    response.set_cookie(
        b.lang_cookie,
        "en" if to == "en" else "zh-CN",
        samesite="lax",
        secure=b.secure,
        httponly=True,
        path="/",
    )
    return response
