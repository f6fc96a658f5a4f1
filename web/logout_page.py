"""RP-initiated logout (OpenID RP-Initiated Logout 1.0 §2-§3): with a valid
`id_token_hint` for the current session, log out without asking; otherwise confirm first.
Redirect only to a post-logout URI registered exactly for the identified client."""

from __future__ import annotations

from typing import Any

from authlib.common.urls import add_params_to_uri
from fastapi import Request
from fastapi.responses import Response
from joserfc import jwt
from joserfc.errors import JoseError
from starlette.concurrency import run_in_threadpool

from idp.logout import end_session
from web.browser import Browser, see_other
from web.http import form_pairs, unit_of_work
from web.runtime import Runtime

CARRY = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")


async def logout_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    b: Browser = request.app.state.browser
    params = (
        dict(request.query_params) if request.method == "GET" else dict(await form_pairs(request))
    )
    secret, new_cookie = b.secret(request)
    confirmed = request.method == "POST" and params.get("decision") == "logout"
    t = b.translator(request, params.get("ui_locales"))
    if confirmed and not b.csrf_ok(request, params):
        return b.render(
            request,
            "error.html",
            status=400,
            secret=secret,
            message=t.pick(("页面已失效，请重试。", "The page expired; please try again.")),
        )
    cookie = b.session_value(request)

    def work() -> tuple[str, Any]:
        with unit_of_work(runtime, request) as ctx:
            hint_claims: dict[str, Any] | None = None
            if params.get("id_token_hint"):
                try:
                    decoded = jwt.decode(
                        params["id_token_hint"], ctx.keys.verify_keys, algorithms=["ES256", "RS256"]
                    )
                except (JoseError, ValueError):
                    return "error", "The id_token_hint is not a valid ID token from here."
                if (
                    decoded.claims.get("iss") != ctx.config.issuer
                    or decoded.header.get("typ") != "JWT"
                ):
                    return "error", "The id_token_hint is not an ID token from here."
                hint_claims = dict(decoded.claims)
            aud = hint_claims.get("aud") if hint_claims else None
            aud_id = aud if isinstance(aud, str) else (aud[0] if aud else None)
            client_id = params.get("client_id") or aud_id
            if params.get("client_id") and aud_id and params["client_id"] != aud_id:
                return "error", "client_id does not match the id_token_hint audience."
            client = ctx.clients.get(client_id) if client_id else None
            target = params.get("post_logout_redirect_uri")
            if target and (client is None or target not in client.post_logout_redirect_uris):
                return "error", "The post_logout_redirect_uri is not registered for the client."
            sso = ctx.sessions.from_cookie(cookie)
            matches = bool(
                hint_claims
                and sso
                and client
                and hint_claims.get("sub") == ctx.sub_for(client, sso.account_id)
            )
            if sso is not None and not matches and not confirmed:
                return "confirm", [(k, params[k]) for k in CARRY if params.get(k)]
            if sso is not None:
                end_session(
                    ctx,
                    sso,
                    reason="logout",
                    actor=f"client:{client.client_id}"
                    if matches and client
                    else f"user:{sso.account_id}",
                )
            if target and params.get("state"):
                target = add_params_to_uri(target, [("state", params["state"])])
            return "done", target

    kind, value = await run_in_threadpool(work)
    if kind == "error":
        return b.render(
            request,
            "error.html",
            status=400,
            secret=secret,
            new_secret_cookie=new_cookie,
            message=value,
            code="invalid_request",
        )
    if kind == "confirm":
        return b.render(
            request,
            "logout.html",
            secret=secret,
            new_secret_cookie=new_cookie,
            carry=value,
            ui_locales=params.get("ui_locales"),
        )
    request.app.state.deliveries.kick()
    response: Response = see_other(value) if value else see_other("/logged-out")
    b.clear_session(response)
    if new_cookie:
        b.remember(response, secret)
    return response
