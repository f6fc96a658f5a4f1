"""The authorization endpoint (OIDC Core §3.1.2), as a list of named steps:

    check_client_and_redirect_uri → check_request_shape → validate_with_authlib →
    check_id_token_hint → decide_login → decide_consent → issue_code

Errors before the redirect URI is known-good show an error page, never a redirect
(RFC 6749 §4.1.2.1, RFC 9700 §4.11.2). Every response carries `iss` (RFC 9207).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Error, scope_to_list
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import Table, bindparam, select

from idp.accounts import ACR_ORDER, acr_satisfies
from idp.claims import USER_SCOPES, parse_claims_request, scopes_for_claims
from idp.clients import OAuthClient
from idp.context import Context
from idp.models import Account, Client, Consent, Interaction, SsoSession
from idp.oauth import (
    AuthorizedUser,
    CoreRequest,
    CoreResponse,
    TongbanServer,
    requested_resources,
)

RESPONSE_MODES = ("query", "form_post")

_CONSENTS = cast(Table, Consent.__table__)
#: Built once: every login reads it, and building a statement costs more than running it.
_CONSENTED = select(_CONSENTS.c.scopes).where(
    _CONSENTS.c.account_id == bindparam("account_id"),
    _CONSENTS.c.client_id == bindparam("client_id"),
)

Kind = Literal["redirect", "form_post", "error_page", "login", "otp", "consent", "act_for"]


@dataclass
class Outcome:
    kind: Kind
    location: str | None = None
    form_action: str | None = None
    form_fields: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    description: str | None = None
    interaction: Interaction | None = None
    client: Client | None = None


class _Redirectable(Exception):
    def __init__(self, error: str, description: str) -> None:
        self.error = error
        self.description = description


def _error_page(error: str, description: str, client: Client | None = None) -> Outcome:
    return Outcome("error_page", error=error, description=description, client=client)


def deliver(
    ctx: Context, redirect_uri: str, params: list[tuple[str, str]], response_mode: str
) -> Outcome:
    """An authorization response (success or error) to a validated redirect URI, with `iss`."""
    params = [*params, ("iss", ctx.config.issuer)]
    if response_mode == "form_post":
        return Outcome("form_post", form_action=redirect_uri, form_fields=params)
    return Outcome("redirect", location=add_params_to_uri(redirect_uri, params))


def _from_core_response(ctx: Context, resp: CoreResponse, response_mode: str) -> Outcome:
    location = resp.location
    if location is None:
        body = resp.body if isinstance(resp.body, dict) else {}
        return _error_page(
            str(body.get("error", "invalid_request")),
            str(body.get("error_description", "The request is not valid.")),
        )
    parts = urlsplit(location)
    base = parts._replace(query="").geturl()
    own = parse_qsl(parts.query, keep_blank_values=True)
    # split the client's own query (kept in the URI) from the response parameters
    response_keys = {"code", "state", "error", "error_description", "error_uri"}
    client_query = [(k, v) for k, v in own if k not in response_keys]
    params = [(k, v) for k, v in own if k in response_keys]
    uri = add_params_to_uri(base, client_query) if client_query else base
    return deliver(ctx, uri, params, response_mode)


def _needed_consent(
    request: CoreRequest, claims: dict[str, Any] | None, client: Client
) -> set[str]:
    scopes = set(scope_to_list(request.scope) or [])
    return (scopes & USER_SCOPES) | (scopes_for_claims(claims) & set(client.scopes))


def _requested_acrs(data: dict[str, str], claims: dict[str, Any] | None) -> tuple[list[str], bool]:
    values = [v for v in (data.get("acr_values") or "").split() if v in ACR_ORDER]
    essential = False
    acr_claim = ((claims or {}).get("id_token") or {}).get("acr")
    if isinstance(acr_claim, dict):
        essential = bool(acr_claim.get("essential"))
        extra = acr_claim.get("values") or ([acr_claim["value"]] if "value" in acr_claim else [])
        values += [v for v in extra if isinstance(v, str) and v in ACR_ORDER]
    return values, essential


def authorize(
    ctx: Context,
    request: CoreRequest,
    *,
    sso: SsoSession | None,
    browser_secret: str,
    interaction: Interaction | None = None,
) -> Outcome:
    data: dict[str, str] = request.payload.data

    # check_client_and_redirect_uri
    client = ctx.clients.get(data.get("client_id", ""))
    if client is None:
        return _error_page("invalid_client", "The client_id is unknown.")
    redirect_uri = data.get("redirect_uri")
    if not redirect_uri:
        return _error_page("invalid_request", "The redirect_uri parameter is missing.", client)
    oauth_client = OAuthClient(client, ctx.clients)
    if not oauth_client.check_redirect_uri(redirect_uri):
        return _error_page(
            "invalid_request", "The redirect_uri is not registered for this client.", client
        )
    response_mode = data.get("response_mode") or "query"
    state = data.get("state")

    def fail(error: str, description: str) -> Outcome:
        params = [("error", error), ("error_description", description)]
        if state:
            params.append(("state", state))
        mode = response_mode if response_mode in RESPONSE_MODES else "query"
        return deliver(ctx, redirect_uri, params, mode)

    # check_request_shape
    if response_mode not in RESPONSE_MODES:
        return fail("invalid_request", "Unsupported response_mode; use query or form_post.")
    if "request" in data:
        return fail("request_not_supported", "Request objects are not supported.")
    if "request_uri" in data:
        return fail("request_uri_not_supported", "request_uri is not supported.")
    for name, values in request.payload.datalist.items():
        if len(values) > 1 and name != "resource":  # RFC 8707 §2: resource may repeat
            return fail("invalid_request", "A parameter is repeated.")
    resources = requested_resources(request)
    if any(r not in client.resources for r in resources):
        return fail("invalid_target", "The client may not ask for a token for this resource.")
    if len(data.get("nonce") or "") > 512 or len(data.get("state") or "") > 1024:
        return fail("invalid_request", "The nonce or state is too long.")
    try:
        claims = parse_claims_request(data.get("claims"))
    except ValueError:
        return fail("invalid_request", "The claims parameter is not valid JSON of the right shape.")
    request.claims_request = claims
    prompts = (data.get("prompt") or "").split()
    if not set(prompts) <= {"none", "login", "consent", "select_account"}:
        return fail("invalid_request", "Unknown prompt value.")
    max_age: int | None = None
    if data.get("max_age") not in (None, ""):
        try:
            max_age = int(data["max_age"])
            if max_age < 0:
                raise ValueError
        except ValueError:
            return fail("invalid_request", "max_age must be a non-negative integer.")

    account: Account | None = None
    if sso is not None:
        account = ctx.session.get(Account, sso.account_id)
        if account is None or account.status != "active":
            sso, account = None, None
    user = AuthorizedUser(account, sso) if account is not None and sso is not None else None

    # validate_with_authlib: response_type, scope, PKCE, nonce, prompt=none without login
    server = TongbanServer(ctx)
    try:
        grant = server.get_consent_grant(request, end_user=user)
    except OAuth2Error as err:
        if err.redirect_uri:
            return fail(err.error or "invalid_request", err.description or "Invalid request.")
        return _error_page(
            err.error or "invalid_request", err.description or "Invalid request.", client
        )

    # The steps done in an interaction count only for the account that did them: on a
    # shared browser another citizen may pick the same interaction up.
    own = (
        interaction
        if interaction is not None
        and interaction.account_id == (account.id if account is not None else None)
        else None
    )
    login_done = own is not None and own.login_done
    consent_done = own is not None and own.consent_done

    # check_id_token_hint
    hint_mismatch = False
    hint = data.get("id_token_hint")
    if hint:
        try:
            token = jwt.decode(hint, ctx.keys.verify_keys, algorithms=["ES256", "RS256"])
            hinted_sub = token.claims.get("sub")
            # only an ID token of ours: not an access or logout token (RFC 8725 §3.11)
            if token.claims.get("iss") != ctx.config.issuer or token.header.get("typ") != "JWT":
                raise ValueError("not an ID token from here")
        except (JoseError, ValueError):
            return fail("invalid_request", "The id_token_hint is not a valid ID token from here.")
        if account is not None and hinted_sub != ctx.sub_for(client, account.id):
            hint_mismatch = True

    # decide_login
    now = ctx.clock.now()
    wanted_acrs, acr_essential = _requested_acrs(data, claims)
    step_up = (
        account is not None
        and sso is not None
        and bool(wanted_acrs)
        and not any(acr_satisfies(sso.acr, a) for a in wanted_acrs)
        and ctx.accounts.has_second_factor(account)
    )
    if (
        account is not None
        and sso is not None
        and acr_essential
        and wanted_acrs
        and not any(acr_satisfies(sso.acr, a) for a in wanted_acrs)
        and not step_up
    ):
        return fail("access_denied", "The requested authentication level is not available.")
    need_login = (
        user is None
        or hint_mismatch
        or (
            not login_done
            and (
                "login" in prompts
                or (
                    max_age is not None
                    and sso is not None
                    and (now - sso.auth_time).total_seconds() > max_age
                )
            )
        )
    )
    if need_login or step_up:
        if "none" in prompts:
            return fail("login_required", "The user must log in.")
        stage: Kind = "otp" if (step_up and not need_login) else "login"
        stepping_up = account.id if stage == "otp" and account is not None else None
        row = _interaction(ctx, request, browser_secret, interaction, stage, stepping_up)
        return Outcome(stage, interaction=row, client=client)

    assert user is not None and account is not None
    # decide_consent
    needed = _needed_consent(request, claims, client)
    stored = (
        ctx.session.connection()
        .execute(_CONSENTED, {"account_id": account.id, "client_id": client.client_id})
        .scalar_one_or_none()
    )
    covered = stored is not None and needed <= set(stored)
    if ("consent" in prompts and not consent_done) or (not covered and not consent_done):
        if "none" in prompts:
            return fail("consent_required", "The user must consent.")
        row = _interaction(ctx, request, browser_secret, interaction, "consent")
        return Outcome("consent", interaction=row, client=client)

    # decide_acting: an agent says whom this session acts for, once per session
    acting_done = own is not None and own.acting_done
    wants_enterprise = "enterprise" in (
        scope_to_list(oauth_client.get_allowed_scope(data.get("scope"))) or []
    )
    sso_now = user.sso
    # A choice stands while it is still true: an agent removed from the enterprise since
    # is asked again rather than silently taken for acting for themself.
    choice_stands = sso_now.acting_chosen and (
        sso_now.acting_for is None
        or ctx.enterprises.acting_claim(sso_now.acting_for, account.id) is not None
    )
    if (
        wants_enterprise
        and not acting_done
        and (not choice_stands or "select_account" in prompts)
        and ctx.enterprises.for_agent(account.id)
    ):
        if "none" in prompts:
            return fail("account_selection_required", "The user must choose whom to act for.")
        row = _interaction(ctx, request, browser_secret, interaction, "act_for")
        return Outcome("act_for", interaction=row, client=client)

    # issue_code
    resp = server.create_authorization_response(request, grant_user=user, grant=grant)
    if interaction is not None:
        ctx.interactions.finish(interaction)
    return _from_core_response(ctx, resp, response_mode)


def _interaction(
    ctx: Context,
    request: CoreRequest,
    browser_secret: str,
    existing: Interaction | None,
    stage: str,
    account_id: str | None = None,
) -> Interaction:
    if existing is not None:
        existing.stage = stage
        if account_id is not None:
            existing.account_id = account_id
        return existing
    # Keys starting with "_" are ours (e.g. `_return`): a request may not smuggle them in.
    params = {k: v for k, v in request.payload.data.items() if not k.startswith("_")}
    if "resource" in params:  # it may repeat; a URI never contains a space
        params["resource"] = " ".join(requested_resources(request))
    return ctx.interactions.start(
        params, browser_secret=browser_secret, stage=stage, account_id=account_id
    )


def consent_scopes(ctx: Context, interaction: Interaction) -> tuple[Client | None, list[str]]:
    """What the consent page lists for this interaction."""
    params = interaction.params
    client = ctx.clients.get(params.get("client_id", ""))
    if client is None:
        return None, []
    requested = set(scope_to_list(params.get("scope", "")) or []) & set(client.scopes)
    try:
        claims = parse_claims_request(params.get("claims"))
    except ValueError:
        claims = None
    wanted = (requested & USER_SCOPES) | (scopes_for_claims(claims) & set(client.scopes))
    order = list(USER_SCOPES)
    return client, sorted(wanted, key=lambda s: order.index(s) if s in order else 99)


def record_acting(ctx: Context, sso: SsoSession, account: Account, uscc: str | None) -> bool:
    """The agent's answer to "whom do you act for": an enterprise it is an agent of, or
    None for themself. False (nothing changed) for an enterprise it does not act for."""
    enterprise = ctx.enterprises.agent_of(account.id, uscc) if uscc else None
    if uscc and enterprise is None:
        return False
    sso.acting_for = enterprise.id if enterprise else None
    sso.acting_chosen = True
    ctx.audit.record(
        ctx.session,
        "session.acting_selected",
        actor=f"user:{account.id}",
        subject=account.id,
        details={"enterprise": enterprise.id if enterprise else None},
    )
    return True


def record_consent(ctx: Context, account: Account, client: Client, scopes: list[str]) -> None:
    row = ctx.session.get(Consent, (account.id, client.client_id))
    if row is None:
        ctx.session.add(
            Consent(
                account_id=account.id,
                client_id=client.client_id,
                scopes=sorted(set(scopes)),
                granted_at=ctx.clock.now(),
            )
        )
    else:
        row.scopes = sorted(set(row.scopes) | set(scopes))
        row.granted_at = ctx.clock.now()
    ctx.session.flush()
    ctx.audit.record(
        ctx.session,
        "consent.granted",
        actor=f"user:{account.id}",
        subject=account.id,
        client_id=client.client_id,
        details={"scopes": sorted(set(scopes))},
    )


def revoke_consent(ctx: Context, account: Account, client_id: str) -> None:
    row = ctx.session.get(Consent, (account.id, client_id))
    if row is not None:
        ctx.session.delete(row)
    ctx.tokens.revoke_account_grants(account.id, client_id, "consent_revoked")
    ctx.session.flush()
    ctx.audit.record(
        ctx.session,
        "consent.revoked",
        actor=f"user:{account.id}",
        subject=account.id,
        client_id=client_id,
    )


def request_from_interaction(ctx: Context, interaction: Interaction) -> CoreRequest:
    params = [(k, v) for k, v in interaction.params.items() if k != "resource"]
    params += [("resource", r) for r in str(interaction.params.get("resource", "")).split()]
    return CoreRequest("GET", f"{ctx.config.issuer}/authorize", {}, params)
