"""Protocol endpoints: discovery, JWKS, authorization, token, userinfo, introspection,
revocation and RP-initiated logout. Protocol logic lives in `idp/`; these adapt HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from idp.authorize import Outcome, authorize, request_from_interaction
from idp.claims import user_claims
from idp.context import Context
from idp.models import Account, Client, Grant, Interaction, SsoSession
from idp.pii import looks_like_phone
from idp.throttle import Throttle
from keys.jws import InvalidJws
from web.browser import TEMPLATES, Browser, see_other
from web.http import (
    JSON_HEADERS,
    client_address,
    core_request,
    form_pairs,
    to_response,
    unit_of_work,
)
from web.logout_page import logout_endpoint
from web.protocol_endpoints import handle
from web.runtime import Runtime

router = APIRouter()


def _form_late(kind: str) -> dict[str, Any]:
    token_params = {
        "grant_type": "authorization_code, refresh_token or client_credentials",
        "code": "authorization_code",
        "redirect_uri": "authorization_code",
        "code_verifier": "PKCE (RFC 7636 §4.5)",
        "refresh_token": "refresh_token",
        "scope": "narrower scope (refresh, client_credentials)",
    }
    token_like = {"token": "the token", "token_type_hint": "access_token or refresh_token"}
    params, required = (
        (token_params, ["grant_type"]) if kind == "token" else (token_like, ["token"])
    )
    props = {
        **params,
        "client_id": "client_secret_post or none",
        "client_secret": "client_secret_post",
        "client_assertion_type": "private_key_jwt",
        "client_assertion": "private_key_jwt (RFC 7523 §2.2)",
    }
    schema = {
        "type": "object",
        "required": required,
        "properties": {k: {"type": "string", "description": v} for k, v in props.items()},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


def rt(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def browser(request: Request) -> Browser:
    b: Browser = request.app.state.browser
    return b


@router.get(
    "/.well-known/openid-configuration",
    tags=["discovery"],
    summary="OpenID Provider metadata (OIDC Discovery 1.0)",
)
async def openid_configuration(request: Request) -> Response:
    return Response(
        request.app.state.discovery,
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


@router.get(
    "/.well-known/oauth-authorization-server",
    tags=["discovery"],
    summary="Authorization server metadata (RFC 8414)",
)
async def oauth_metadata(request: Request) -> Response:
    return await openid_configuration(request)


@router.get("/jwks", tags=["discovery"], summary="Public signing keys (RFC 7517), newest first")
async def jwks(request: Request) -> Response:
    snap = rt(request).keys()
    return Response(
        snap.jwks_bytes,
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


def login_page_fields(row: Interaction, client_name: str | None) -> dict[str, Any]:
    """What the login page shows for an interaction."""
    hint = str(row.params.get("login_hint") or "")
    return {
        "interaction": row.id,
        "client_name": client_name,
        "ui_locales": row.params.get("ui_locales"),
        # Only a phone number is taken from login_hint: an ID number must never travel
        # in a URL (standards.md §7), so such a hint is ignored.
        "username": hint if looks_like_phone(hint) else None,
        # The language switch comes back to this interaction rather than start another.
        "back_path": f"/login?interaction={row.id}",
    }


def render_outcome(
    request: Request,
    outcome: Outcome,
    *,
    secret: str,
    new_cookie: bool,
    inline_login: bool = False,
) -> Response:
    """The browser's answer to an authorization outcome. With `inline_login` (a GET of the
    authorization endpoint) a login step is answered with the login page itself rather
    than a redirect to it, which saves the browser a round trip."""
    b = browser(request)
    response: Response
    if inline_login and outcome.kind == "login" and outcome.interaction is not None:
        name = outcome.client.name if outcome.client is not None else None
        return b.render(
            request,
            "login.html",
            secret=secret,
            new_secret_cookie=new_cookie,
            **login_page_fields(outcome.interaction, name),
        )
    if outcome.kind == "redirect":
        assert outcome.location
        response = see_other(outcome.location)
    elif outcome.kind == "form_post":
        html = TEMPLATES.get_template("form_post.html").render(
            action=outcome.form_action, fields=outcome.form_fields
        )
        response = HTMLResponse(html, headers={"Cache-Control": "no-store"})
    elif outcome.kind == "error_page":
        response = b.render(
            request,
            "error.html",
            status=400,
            secret=secret,
            message=outcome.description,
            code=outcome.error,
        )
    else:
        assert outcome.interaction is not None
        path = {
            "login": "/login",
            "otp": "/login/otp",
            "consent": "/consent",
            "act_for": "/act-for",
        }[outcome.kind]
        response = see_other(f"{path}?interaction={outcome.interaction.id}")
    if new_cookie:
        b.remember(response, secret)
    return response


def too_many_logins(request: Request, secret: str, retry_after: int) -> Response:
    """429 page for an address that started more logins than a minute allows."""
    b = browser(request)
    t = b.translator(request)
    response = b.render(
        request,
        "error.html",
        status=429,
        secret=secret,
        message=t.pick(
            ("登录请求过于频繁，请稍后再试。", "Too many logins started; try again shortly.")
        ),
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


async def authorization_endpoint(request: Request) -> Response:
    """Authorization endpoint (OIDC Core §3.1.2): the parameters come in the query (GET)
    or the form body (POST); the answer is a redirect or an HTML page."""
    params = (
        list(request.query_params.multi_items())
        if request.method == "GET"
        else await form_pairs(request)
    )
    b = browser(request)
    secret, new_cookie = b.secret(request)
    session_cookie = b.session_value(request)

    throttle: Throttle = request.app.state.throttle
    limit = rt(request).settings.interactions_per_address_per_minute

    def work() -> Outcome | int:
        with unit_of_work(rt(request), request) as ctx:
            now = ctx.clock.now()
            key = f"interaction:{ctx.source}"
            if throttle.failures(ctx.session, key, now) >= limit:
                return throttle.retry_after(now)
            sso = ctx.sessions.from_cookie(session_cookie)
            outcome = authorize(ctx, core_request(request, params), sso=sso, browser_secret=secret)
            if outcome.interaction is not None:  # a login started: a row stored until used
                throttle.fail(ctx.session, key, now)
            return outcome

    outcome = await run_in_threadpool(work)
    if isinstance(outcome, int):
        return too_many_logins(request, secret, outcome)
    return render_outcome(
        request,
        outcome,
        secret=secret,
        new_cookie=new_cookie,
        inline_login=request.method == "GET",
    )


def continue_interaction(
    ctx: Context, row: Interaction, *, sso: SsoSession | None, browser_secret: str
) -> Outcome | str:
    """Carry an interaction on once a login, second-factor or consent step is done: the
    next step, or the answer to the client. The step's own POST calls this in its unit of
    work, so the browser goes straight on instead of through another request."""
    if "_return" in row.params:
        ctx.interactions.finish(row)
        # only the fixed local pages a direct login can come from (no open redirect)
        return "/account"
    # The step's changes to the interaction are written at commit, not before the next
    # read: most logins end by deleting the row, and then there is nothing to update.
    with ctx.session.no_autoflush:
        return authorize(
            ctx,
            request_from_interaction(ctx, row),
            sso=sso,
            browser_secret=browser_secret,
            interaction=row,
        )


def answer_step(
    request: Request, outcome: Outcome | str, *, secret: str, session_cookie: str | None = None
) -> Response:
    """The response to a completed step: a redirect to a local page or the outcome."""
    response: Response
    if isinstance(outcome, str):
        response = see_other(outcome)
    else:
        response = render_outcome(request, outcome, secret=secret, new_cookie=False)
    if session_cookie is not None:
        browser(request).set_session(response, session_cookie)
    return response


def _protocol_route(path: str, summary: str) -> None:
    """Document one of the POST endpoints that `web.protocol_endpoints.ProtocolFront`
    serves ahead of routing; the route answers too if the front is not installed."""

    async def endpoint(request: Request) -> Response:
        params = await form_pairs(request)
        source = client_address(request, rt(request).settings.trusted_proxies)
        response = await run_in_threadpool(
            handle, rt(request), path, request.headers, params, source
        )
        assert response is not None  # it may block here, so it always answers
        return to_response(response)

    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        tags=["oidc"],
        summary=summary,
        name=path.strip("/"),
        openapi_extra=_form_late(path.strip("/")),
    )


_protocol_route("/token", "Token endpoint (RFC 6749 §3.2)")
_protocol_route("/introspect", "Token introspection (RFC 7662)")
_protocol_route("/revoke", "Token revocation (RFC 7009)")


def bearer_error(status: int, error: str | None, description: str | None = None) -> Response:
    """RFC 6750 §3: errors in WWW-Authenticate; no error code when no token was sent."""
    parts = ['Bearer realm="tongban"']
    body: dict[str, Any] = {}
    if error:
        parts.append(f'error="{error}"')
        body["error"] = error
        if description:
            parts.append(f'error_description="{description}"')
            body["error_description"] = description
    return JSONResponse(
        body, status_code=status, headers={**JSON_HEADERS, "WWW-Authenticate": ", ".join(parts)}
    )


def bearer_token(request: Request) -> str | None:
    """The access token from the Authorization header only (FAPI 2.0 §5.3.4)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def userinfo_endpoint(request: Request) -> Response:
    """UserInfo (OIDC Core §5.3), with the access token in the Authorization header."""
    token = bearer_token(request)
    if token is None:
        if request.method == "POST" and "access_token" in dict(await form_pairs(request)):
            return bearer_error(
                400, "invalid_request", "Send the access token in the Authorization header."
            )
        return bearer_error(401, None)

    def work() -> Response:
        with unit_of_work(rt(request), request) as ctx:
            try:
                claims = ctx.tokens.verify_access_token(token)
            except InvalidJws:
                return bearer_error(401, "invalid_token", "The access token is not valid.")
            scopes = str(claims.get("scope", "")).split()
            if "openid" not in scopes or "gid" not in claims:
                return bearer_error(
                    403, "insufficient_scope", "The token does not carry the openid scope."
                )
            grant = ctx.session.get(Grant, claims["gid"])
            account = ctx.session.get(Account, grant.account_id) if grant else None
            client = ctx.session.get(Client, claims["client_id"])
            if grant is None or account is None or client is None:
                return bearer_error(401, "invalid_token", "The access token is not valid.")
            requested = list(((grant.claims or {}).get("userinfo") or {}).keys())
            body = {
                "sub": claims["sub"],
                **user_claims(
                    account=account,
                    client=client,
                    scopes=scopes,
                    phone=ctx.accounts.phone(account),
                    id_number=ctx.accounts.id_number(account) if "id_number" in scopes else None,
                    enterprises=(
                        ctx.enterprises.for_agent(account.id) if "enterprise" in scopes else []
                    ),
                    requested=requested,
                ),
            }
            if "enterprise" in scopes:
                act_for = ctx.enterprises.acting_claim(grant.acting_for, account.id)
                if act_for is not None:
                    body["act_for"] = act_for
            return JSONResponse(body, headers=JSON_HEADERS)

    return await run_in_threadpool(work)


def _form(properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    """An `application/x-www-form-urlencoded` request body for the OpenAPI document."""
    schema = {
        "type": "object",
        "required": required,
        "properties": {k: {"type": "string", "description": v} for k, v in properties.items()},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


_AUTHORIZE_PARAMS = {
    "response_type": "code",
    "client_id": "the client",
    "redirect_uri": "registered exactly",
    "scope": "openid and more",
    "state": "CSRF token of the client",
    "nonce": "replay check",
    "code_challenge": "PKCE S256 challenge",
    "code_challenge_method": "S256",
    "prompt": "none, login, consent",
    "max_age": "seconds",
    "acr_values": "assurance wanted",
    "claims": "OIDC Core §5.5 JSON",
    "response_mode": "query or form_post",
    "ui_locales": "zh-CN or en",
    "id_token_hint": "a previous ID token",
}
_LOGOUT_PARAMS = {
    "id_token_hint": "logs out without asking when valid",
    "client_id": "the client",
    "post_logout_redirect_uri": "registered exactly",
    "state": "returned on the redirect",
    "ui_locales": "zh-CN or en",
}
_QUERY = [
    {"name": k, "in": "query", "required": False, "description": v, "schema": {"type": "string"}}
    for k, v in _AUTHORIZE_PARAMS.items()
]

router.add_api_route(
    "/authorize",
    authorization_endpoint,
    methods=["GET"],
    tags=["oidc"],
    name="authorize_get",
    summary="Authorization endpoint (OIDC Core §3.1.2)",
    openapi_extra={"parameters": _QUERY},
)
router.add_api_route(
    "/authorize",
    authorization_endpoint,
    methods=["POST"],
    tags=["oidc"],
    name="authorize_post",
    summary="Authorization endpoint, form POST",
    openapi_extra=_form(_AUTHORIZE_PARAMS, ["response_type", "client_id"]),
)
router.add_api_route(
    "/userinfo",
    userinfo_endpoint,
    methods=["GET"],
    tags=["oidc"],
    name="userinfo_get",
    summary="UserInfo endpoint (OIDC Core §5.3)",
)
router.add_api_route(
    "/userinfo",
    userinfo_endpoint,
    methods=["POST"],
    tags=["oidc"],
    name="userinfo_post",
    summary="UserInfo endpoint, POST",
)
router.add_api_route(
    "/logout",
    logout_endpoint,
    methods=["GET"],
    tags=["oidc"],
    name="logout_get",
    summary="End-session endpoint (OpenID RP-Initiated Logout 1.0)",
    openapi_extra={
        "parameters": [
            {
                "name": k,
                "in": "query",
                "required": False,
                "description": v,
                "schema": {"type": "string"},
            }
            for k, v in _LOGOUT_PARAMS.items()
        ]
    },
)
router.add_api_route(
    "/logout",
    logout_endpoint,
    methods=["POST"],
    tags=["oidc"],
    name="logout_post",
    summary="End-session endpoint, form POST",
    openapi_extra=_form(
        {**_LOGOUT_PARAMS, "decision": "logout", "csrf_token": "from the confirmation page"}, []
    ),
)
