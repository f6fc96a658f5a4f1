"""The OAuth 2.0 / OpenID Connect protocol core on Authlib.

Authlib's grants and endpoints do the protocol; this module fills only their storage
hooks (style.md) and issues our tokens. The server is built per unit of work around a
`Context`, so each request's database session is explicit.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    grants,
    scope_to_list,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from idp.claims import USER_SCOPES, user_claims
from idp.clients import KNOWN_SCOPES, MACHINE_SCOPES, OAuthClient
from idp.context import Context
from idp.models import (
    Account,
    AuthorizationCode,
    Client,
    Grant,
    RefreshToken,
    ReplayGuard,
    SsoSession,
)
from idp.tokens import WouldBlock
from keys.jws import InvalidJws
from kit.clock import epoch
from kit.db import insert_row
from kit.ids import new_id, new_secret

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is invalid, unknown or not allowed."""

    error = "invalid_target"


def requested_resources(request: OAuth2Request) -> list[str]:
    """The `resource` parameters of a request (RFC 8707 §2), in order, once each."""
    return list(dict.fromkeys(request.payload.datalist.get("resource", [])))


def check_resources(requested: list[str], allowed: list[str]) -> None:
    if any(r not in allowed for r in requested):
        raise InvalidTargetError(
            description="The client may not ask for a token for this resource."
        )


def audience(requested: list[str], granted: list[str] | None) -> str | list[str] | None:
    """`aud` of an access token: the resources asked for now, else those of the grant,
    else None for the default (this issuer, for userinfo and the admin API)."""
    chosen = requested or granted or []
    if not chosen:
        return None
    return chosen[0] if len(chosen) == 1 else chosen


# -- requests and responses, free of any web framework ----------------------------------


class CorePayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in params:
            self._datalist[key].append(value)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class CoreRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request as the protocol core sees it. `params` are the query string for a
    GET and the form body for a POST (never both: RFC 6749 §3.2 token parameters live in
    the body only)."""

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], params: list[tuple[str, str]]
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = CorePayload(params)
        self._form = self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class CoreResponse:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None


@dataclass
class AuthorizedUser:
    """The end user as Authlib's grants carry it: the account and its live session."""

    account: Account
    sso: SsoSession

    def get_user_id(self) -> str:
        return self.account.id


# -- token issuance shared by the grants --------------------------------------------------


def issue_user_tokens(
    ctx: Context,
    *,
    client: Client,
    account: Account,
    grant: Grant,
    scope: str,
    refresh_scope: str | None,
    nonce: str | None,
    resources_asked: list[str] | None = None,
) -> dict[str, Any]:
    """Access token (+ refresh token) (+ ID token) for a user grant; the access token's
    audience is the resources asked for now, else the grant's (RFC 8707), else this
    issuer."""
    sub = ctx.sub_for(client, account.id)
    scopes = scope_to_list(scope) or []
    # Whom the agent acts for travels with every token of the grant, like `acr`: the
    # department system and its APIs must know the enterprise the request is made for.
    act_for = (
        ctx.enterprises.acting_claim(grant.acting_for, account.id)
        if "enterprise" in scopes
        else None
    )
    access, ttl = ctx.tokens.access_token(
        client_id=client.client_id,
        sub=sub,
        scope=scope,
        gid=grant.id,
        auth_time=grant.auth_time,
        acr=grant.acr,
        sid=grant.session_id,
        act_for=act_for,
        audience=audience(resources_asked or [], grant.resources),
    )
    token: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    }
    if refresh_scope is not None:
        token["refresh_token"] = ctx.tokens.new_refresh_token(grant, refresh_scope)
    if "openid" in scopes:
        # Only the claims asked for in `claims.id_token`, and never the ID number: ID tokens
        # travel through browsers and logout URLs (id_token_hint); userinfo carries it.
        requested = [c for c in ((grant.claims or {}).get("id_token") or {}) if c != "id_number"]
        extra: dict[str, Any] = {}
        if requested:
            released = user_claims(
                account=account,
                client=client,
                scopes=scopes,
                phone=ctx.accounts.phone(account),
                id_number=None,
                enterprises=ctx.enterprises.for_agent(account.id) if "enterprise" in scopes else [],
                requested=requested,
            )
            extra = {k: v for k, v in released.items() if k in requested}
        if act_for is not None:
            extra["act_for"] = act_for
        token["id_token"] = ctx.tokens.id_token(
            alg=client.id_token_alg,
            client_id=client.client_id,
            sub=sub,
            auth_time=grant.auth_time or ctx.clock.now(),
            nonce=nonce,
            acr=grant.acr,
            amr=grant.amr,
            sid=grant.session_id,
            access_token=access,
            extra=extra,
        )
    ctx.audit.record(
        ctx.session,
        "token.issued",
        actor=f"client:{client.client_id}",
        subject=account.id,
        client_id=client.client_id,
        source=ctx.source,
        details={"scope": scope, "grant": grant.id, "refresh": refresh_scope is not None},
    )
    return token


# -- grants -------------------------------------------------------------------------------


@dataclass
class CodeRecord:
    """Authlib's view of a consumed authorization code."""

    row: AuthorizationCode

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return epoch(self.row.auth_time)

    def get_acr(self) -> str:
        return self.row.acr

    def get_amr(self) -> list[str]:
        return self.row.amr

    @property
    def code_challenge(self) -> str | None:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.row.code_challenge_method


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1 with OIDC Core §3.1. Codes: `tbac_` + 256 bits, stored hashed,
    single use, ≤ 60 s (FAPI 2.0 §5.3.2.1); a second use revokes what the first gave."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    server: TongbanServer

    @property
    def ctx(self) -> Context:
        return self.server.ctx

    def generate_authorization_code(self) -> str:
        return new_secret("tbac_", 32)

    def save_authorization_code(self, code: str, request: CoreRequest) -> None:
        ctx = self.ctx
        user: AuthorizedUser = request.user
        data = request.payload.data
        now = ctx.clock.now()
        # written, never read back in this unit of work: no object to track
        insert_row(
            ctx.session,
            AuthorizationCode,
            {
                "code_hash": ctx.services.secret_hash(code),
                "client_id": request.client.get_client_id(),
                "account_id": user.account.id,
                "session_id": user.sso.id,
                "grant_id": new_id(),
                "redirect_uri": request.payload.redirect_uri,
                "scope": request.scope,
                "nonce": data.get("nonce"),
                "code_challenge": data.get("code_challenge"),
                "code_challenge_method": data.get("code_challenge_method"),
                "auth_time": user.sso.auth_time,
                "acr": user.sso.acr,
                "amr": list(user.sso.amr),
                "claims": getattr(request, "claims_request", None),
                "acting_for": (
                    user.sso.acting_for if "enterprise" in scope_to_list(request.scope) else None
                ),
                "resources": requested_resources(request) or None,
                "created_at": now,
                "expires_at": now + timedelta(seconds=ctx.config.code_ttl),
            },
        )
        ctx.sessions.add_participant(user.sso, request.client.get_client_id())
        ctx.audit.record(
            ctx.session,
            "authorization_code.issued",
            actor=f"user:{user.account.id}",
            subject=user.account.id,
            client_id=request.client.get_client_id(),
            source=ctx.source,
        )

    def query_authorization_code(self, code: str, client: OAuthClient) -> CodeRecord | None:
        ctx = self.ctx
        if not isinstance(code, str) or not code.startswith("tbac_") or len(code) > 128:
            return None
        row = ctx.session.get(AuthorizationCode, ctx.services.secret_hash(code))
        if row is None or row.client_id != client.get_client_id():
            return None
        now = ctx.clock.now()
        if row.expires_at <= now:
            return None
        # Before the code is spent: a mistaken resource must not cost the client its code.
        check_resources(requested_resources(self.request), row.resources or client.row.resources)
        won = ctx.session.execute(
            update(AuthorizationCode)
            .where(
                AuthorizationCode.code_hash == row.code_hash,
                AuthorizationCode.consumed_at.is_(None),
            )
            .values(consumed_at=now)
        )
        if getattr(won, "rowcount", 0) != 1:
            # RFC 6749 §4.1.2 / RFC 9700 §4.2.4: a reused code revokes its tokens.
            ctx.tokens.revoke_grant(row.grant_id, "authorization_code_reuse")
            ctx.audit.record(
                ctx.session,
                "authorization_code.reused",
                result="failure",
                subject=row.account_id,
                client_id=row.client_id,
                source=ctx.source,
            )
            return None
        ctx.audit.record(
            ctx.session,
            "authorization_code.consumed",
            subject=row.account_id,
            client_id=row.client_id,
            source=ctx.source,
        )
        return CodeRecord(row)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        """Consumed atomically in `query_authorization_code`; expired rows are purged."""

    def authenticate_user(self, authorization_code: CodeRecord) -> Account | None:
        account = self.ctx.session.get(Account, authorization_code.row.account_id)
        return account if account is not None and account.status == "active" else None

    def generate_token(
        self,
        user: Account | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        ctx = self.ctx
        rec: CodeRecord = self.request.authorization_code
        client: Client = self.request.client.row
        assert user is not None
        scope = scope or ""
        grant = ctx.tokens.new_grant(
            client_id=client.client_id,
            account_id=user.id,
            session_id=rec.row.session_id,
            scope=scope,
            auth_time=rec.row.auth_time,
            acr=rec.row.acr,
            amr=rec.row.amr,
            claims=rec.row.claims,
        )
        grant.id = rec.row.grant_id
        grant.acting_for = rec.row.acting_for
        requested = requested_resources(self.request)
        grant.resources = rec.row.resources or requested or None
        ctx.session.flush()
        return issue_user_tokens(
            ctx,
            client=client,
            account=user,
            grant=grant,
            scope=scope,
            refresh_scope=scope if include_refresh_token else None,
            nonce=rec.row.nonce,
            resources_asked=requested,
        )


@dataclass
class RefreshRecord:
    row: RefreshToken
    grant: Grant

    def check_client(self, client: OAuthClient) -> bool:
        return self.grant.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.row.scope


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: TongbanServer

    @property
    def ctx(self) -> Context:
        return self.server.ctx

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        ctx = self.ctx
        row = ctx.tokens.find_refresh_token(refresh_token)
        if row is None:
            return None
        grant = ctx.session.get(Grant, row.grant_id)
        if grant is None or grant.revoked_at is not None:
            return None
        now = ctx.clock.now()
        if row.rotated_at is not None:
            self._reuse_detected(grant)
            return None
        if row.expires_at <= now or grant.absolute_expires_at <= now:
            return None
        return RefreshRecord(row, grant)

    def _reuse_detected(self, grant: Grant) -> None:
        ctx = self.ctx
        ctx.tokens.revoke_grant(grant.id, "refresh_token_reuse")
        ctx.audit.record(
            ctx.session,
            "refresh_token.reused",
            result="failure",
            subject=grant.account_id,
            client_id=grant.client_id,
            source=ctx.source,
        )

    def validate_token_request(self) -> None:
        super().validate_token_request()
        record: RefreshRecord = self.request.refresh_token
        # Before the token is spent (RFC 8707 §2.2: a refresh may narrow the audience).
        check_resources(
            requested_resources(self.request),
            record.grant.resources or self.request.client.row.resources,
        )
        if not self.ctx.tokens.claim_refresh_token(record.row):
            # Lost a race with another use of the same token: that is reuse too.
            self._reuse_detected(record.grant)
            raise InvalidGrantError("The refresh token was already used.")

    def authenticate_user(self, refresh_token: RefreshRecord) -> Account | None:
        if refresh_token.grant.account_id is None:
            return None
        account = self.ctx.session.get(Account, refresh_token.grant.account_id)
        return account if account is not None and account.status == "active" else None

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        """Already marked used in `validate_token_request`, atomically."""

    def generate_token(
        self,
        user: Account | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        record: RefreshRecord = self.request.refresh_token
        assert user is not None
        return issue_user_tokens(
            self.ctx,
            client=self.request.client.row,
            account=user,
            grant=record.grant,
            scope=scope or record.row.scope,
            refresh_scope=record.row.scope,
            nonce=None,
            resources_asked=requested_resources(self.request),
        )


class ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 §4.4 for department systems acting for themselves (admin API, sealing)."""

    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS
    server: TongbanServer

    def generate_token(
        self,
        user: Any = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        ctx = self.server.ctx
        client: Client = self.request.client.row
        allowed = set(client.scopes) & MACHINE_SCOPES
        requested = scope_to_list(scope) if scope else sorted(allowed)
        if not set(requested) <= allowed:
            raise InvalidScopeError("The client is not registered for the requested scope.")
        granted = " ".join(requested)
        resources = requested_resources(self.request)
        check_resources(resources, client.resources)
        access, ttl = ctx.tokens.access_token(
            client_id=client.client_id,
            sub=client.client_id,
            scope=granted,
            audience=audience(resources, None),
        )
        ctx.audit_later(
            "token.issued",
            actor=f"client:{client.client_id}",
            client_id=client.client_id,
            source=ctx.source,
            details={"scope": granted, "grant": "client_credentials"},
        )
        return {"access_token": access, "token_type": "Bearer", "expires_in": ttl, "scope": granted}


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE (RFC 7636) with S256 only (RFC 9700 §2.1.1); required for public clients at
    the authorization endpoint, and a verifier without a challenge is rejected (§4.8.2)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        if challenge and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        if not challenge and grant.request.client.is_public:
            raise InvalidRequestError("Public clients must use PKCE (code_challenge).")
        super().validate_code_challenge(grant, redirect_uri)


class OpenIdFlow(OpenIDCode):  # type: ignore[misc]
    """OIDC Core §3.1.2 request checks (prompt, nonce) from Authlib; the ID token itself
    is issued with the access token in `issue_user_tokens` (our signer, our claims)."""

    def exists_nonce(self, nonce: str, request: CoreRequest) -> bool:
        # Nonce replay is the RP's check (OIDC Core §15.5.2); codes are single-use here.
        return False

    def process_token(self, grant: Any, response: Any) -> Any:
        return response[1]


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """`private_key_jwt` (OIDC Core §9, RFC 7523 §2.2). The issuer and the token endpoint
    are accepted audiences (FAPI 2.0 §5.3.2.1); each assertion `jti` works once."""

    CLIENT_AUTH_METHOD = "private_key_jwt"
    #: client JWKS fetched from a registered `jwks_uri`, shared by the process for 5 minutes
    _jwks_cache: ClassVar[dict[str, tuple[float, dict[str, Any] | None]]] = {}

    def __init__(self, server: TongbanServer) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self.server = server

    @property
    def ctx(self) -> Context:
        return self.server.ctx

    def get_audiences(self) -> list[str]:
        issuer = self.ctx.config.issuer
        return [issuer, f"{issuer}/token"]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        ctx = self.ctx
        exp = claims.get("exp")
        expires = datetime.fromtimestamp(
            int(exp) if isinstance(exp, int) else 0, tz=ctx.clock.now().tzinfo
        )
        try:
            with ctx.session.begin_nested():
                ctx.session.add(
                    ReplayGuard(key=f"pkjwt:{claims['sub']}:{jti}"[:200], expires_at=expires)
                )
        except IntegrityError:
            return False
        return True

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        row = client.row
        # Authlib resolves keys before it checks the client's method: refuse early, so an
        # assertion naming a secret-based client never makes us fetch or fail loudly.
        if row.auth_method != "private_key_jwt":
            raise InvalidClientError(description="The client does not use private_key_jwt.")
        try:
            return KeySet.import_key_set(row.jwks or self._fetch_jwks(row.jwks_uri or ""))  # type: ignore[arg-type]
        except InvalidClientError:
            raise
        except Exception as exc:  # any malformed or unreachable key set
            raise InvalidClientError(description="The client's keys are not usable.") from exc

    def _fetch_jwks(self, uri: str) -> dict[str, Any]:
        """The client's registered JWKS (configuration, not token input), cached 5 minutes;
        a failure is cached for a minute so a slow host cannot be hammered through us."""
        if not uri:
            raise InvalidClientError(description="The client has no keys.")
        cached = self._jwks_cache.get(uri)
        if cached is not None and cached[0] > time.monotonic():
            if cached[1] is None:
                raise InvalidClientError(description="The client's keys are not reachable.")
            return cached[1]
        try:
            keys: dict[str, Any] = _bounded_get_json(uri)
            self._jwks_cache[uri] = (time.monotonic() + 300, keys)
            return keys
        except Exception as exc:
            self._jwks_cache[uri] = (time.monotonic() + 60, None)
            raise InvalidClientError(description="The client's keys are not reachable.") from exc


def _bounded_get_json(uri: str, *, limit: int = 64 * 1024, seconds: float = 5.0) -> Any:
    """GET with an overall deadline and a size cap (a per-read timeout alone lets a server
    that sends one byte at a time hold us forever)."""
    deadline = time.monotonic() + seconds
    body = b""
    with httpx.stream("GET", uri, timeout=min(3.0, seconds), follow_redirects=False) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > limit or time.monotonic() > deadline:
                raise ValueError("JWKS too large or too slow")
    return json.loads(body)


# -- endpoints ----------------------------------------------------------------------------


def token_owner(token: dict[str, Any]) -> str:
    """The client a token found by `find_token` was issued to."""
    if token["kind"] == "access":
        return str(token["claims"]["client_id"])
    return str(token["grant"].client_id)


def find_token(ctx: Context, token_string: str) -> dict[str, Any] | None:
    """An access token (verified JWT) or a refresh token (looked up by keyed hash)."""
    if token_string.startswith("tbrt_"):
        if not ctx.may_block:
            raise WouldBlock("refresh tokens are read from the database")
        row = ctx.tokens.find_refresh_token(token_string)
        if row is None:
            return None
        grant = ctx.session.get(Grant, row.grant_id)
        return {"kind": "refresh", "row": row, "grant": grant} if grant else None
    try:
        claims = ctx.tokens.verify_access_token(
            token_string, any_audience=True, may_block=ctx.may_block
        )
    except InvalidJws:
        return None
    return {"kind": "access", "claims": claims}


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662. Any authenticated confidential client may introspect tokens issued to
    it; clients with the `admin` scope may introspect any token."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS
    SUPPORTED_TOKEN_TYPES = ("access_token", "refresh_token")
    server: TongbanServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(self.server.ctx, token_string)

    def check_permission(self, token: Any, client: OAuthClient, request: CoreRequest) -> bool:
        return token_owner(token) == client.get_client_id() or "admin" in client.row.scopes

    def create_introspection_payload(self, token: Any) -> dict[str, Any]:
        if not token:
            return {"active": False}
        ctx = self.server.ctx
        if token["kind"] == "access":
            c = token["claims"]
            out = {
                k: c[k]
                for k in (
                    "scope",
                    "client_id",
                    "sub",
                    "aud",
                    "iss",
                    "exp",
                    "iat",
                    "jti",
                    "acr",
                    "auth_time",
                    "sid",
                    "act_for",
                )
                if k in c
            }
            return {"active": True, "token_type": "Bearer", **out}
        row, grant = token["row"], token["grant"]
        now = ctx.clock.now()
        if (
            row.rotated_at is not None
            or row.expires_at <= now
            or grant.revoked_at is not None
            or grant.absolute_expires_at <= now
        ):
            return {"active": False}
        client = ctx.session.get(Client, grant.client_id)
        sub = ctx.sub_for(client, grant.account_id) if client and grant.account_id else None
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": row.scope,
            "client_id": grant.client_id,
            "sub": sub,
            "iss": ctx.config.issuer,
            "exp": epoch(row.expires_at),
            "iat": epoch(row.created_at),
        }


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009. Revoking a refresh token revokes its grant (and so its access tokens);
    an access token is revoked by `jti`."""

    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS
    server: TongbanServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(self.server.ctx, token_string)

    def check_permission(self, token: Any, client: OAuthClient, request: CoreRequest) -> bool:
        return token_owner(token) == client.get_client_id()

    def authenticate_token(self, request: CoreRequest, client: OAuthClient) -> Any:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # RFC 7009 §2.2: an unknown token or another client's token still answers 200.
        if token and self.check_permission(token, client, request):
            return token
        return None

    def revoke_token(self, token: Any, request: CoreRequest) -> None:
        ctx = self.server.ctx
        if token["kind"] == "access":
            ctx.tokens.revoke_access_token(token["claims"])
            subject = None
        else:
            ctx.tokens.revoke_grant(token["grant"].id, "revoked_by_client")
            subject = token["grant"].account_id
        ctx.audit.record(
            ctx.session,
            "token.revoked",
            actor=f"client:{request.client.get_client_id()}",
            subject=subject,
            client_id=request.client.get_client_id(),
            source=ctx.source,
            details={"kind": token["kind"]},
        )


# -- the server ---------------------------------------------------------------------------


_bound_context: ContextVar[Context] = ContextVar("tongban_oauth_context")


class TongbanServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server around our storage hooks.

    Built with a `Context` it serves that one unit of work. Built without one it can be
    kept for the life of the process and serve each request's context through `bound`:
    constructing the server (grants, endpoints, client authentication) costs more than
    issuing a machine token, and nothing in it is per request (Authlib builds each grant
    from the request)."""

    def __init__(self, ctx: Context | None = None) -> None:
        super().__init__(scopes_supported=list(KNOWN_SCOPES))
        self._ctx = ctx
        self.register_grant(CodeGrant, [S256Only(required=True), OpenIdFlow(require_nonce=False)])
        self.register_grant(RefreshGrant)
        self.register_grant(ClientCredentials)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(self))

    @property
    def ctx(self) -> Context:
        return self._ctx if self._ctx is not None else _bound_context.get()

    @contextmanager
    def bound(self, ctx: Context) -> Iterator[TongbanServer]:
        """Serve `ctx` in this thread or task until the block ends (a `ContextVar`, so
        requests running at once in the thread pool each see their own)."""
        token = _bound_context.set(ctx)
        try:
            yield self
        finally:
            _bound_context.reset(token)

    def query_client(self, client_id: str) -> OAuthClient | None:
        ctx = self.ctx
        row = ctx.active_client(client_id) if isinstance(client_id, str) else None
        return OAuthClient(row, ctx.clients) if row is not None else None

    def save_token(self, token: dict[str, Any], request: CoreRequest) -> None:
        """Tokens are persisted when generated (`issue_user_tokens`)."""

    def validate_requested_scope(self, scope: str | None) -> None:
        """OIDC Core §3.1.2.1: scope values not understood are ignored, not errors."""

    def create_oauth2_request(self, request: CoreRequest) -> CoreRequest:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> CoreResponse:
        return CoreResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's signals are not used: audit events are recorded where things happen."""


__all__ = [
    "USER_SCOPES",
    "AuthorizedUser",
    "CoreRequest",
    "CoreResponse",
    "TongbanServer",
]
