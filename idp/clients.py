"""Relying parties (department systems): registration rules and the Authlib client model.

RFC 9700 §2.1/§4.1: exact redirect-URI matching; https only, except loopback http for
native apps (RFC 8252 §7.3), where only the port may vary and only for public clients.
Client secrets are random (256 bits, readable `tbcs_` prefix) and stored as keyed hashes.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, list_to_scope, scope_to_list
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.errors import IdpError
from idp.models import Client
from idp.ports import AuditSink
from kit.clock import Clock
from kit.identifiers import normalise_uscc
from kit.ids import constant_time_equal, new_secret

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
ID_TOKEN_ALGS = ("ES256", "RS256")
#: Scopes a client can be registered for. `id_number` releases the real ID number and
#: needs a recorded statutory purpose (PIPL Art. 13, 28).
KNOWN_SCOPES = (
    "openid",
    "profile",
    "phone",
    "offline_access",
    "id_number",
    "enterprise",
    "admin",
    "seal:use",
    "licence:read",
    "licence:issue",
)
DEFAULT_SCOPES = ("openid", "profile", "phone", "offline_access")
#: Scopes for a department system acting for itself (client_credentials), never for a user.
MACHINE_SCOPES = frozenset({"admin", "seal:use", "licence:issue", "licence:read"})


class ClientError(IdpError):
    code = "invalid_client_metadata"


#: RFC 8252 §7.3 loopback redirect: http, a literal loopback IP, an optional port.
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|\[::1\])(:\d{1,5})?(/[^?#]*)?(\?[^#]*)?$")
#: Characters that parsers disagree on (a browser reads `\` as `/`, Python does not).
_AMBIGUOUS = re.compile(r"[\\@\s\x00-\x1f\x7f]")


def is_loopback(uri: str) -> bool:
    """A loopback URI by a strict textual rule, never by a parser's reading of it."""
    return bool(_LOOPBACK.match(uri)) and not _AMBIGUOUS.search(uri)


def validate_uri(uri: str, *, what: str) -> str:
    if _AMBIGUOUS.search(uri) or len(uri) > 2000:
        raise ClientError(f"{what} contains characters that are not allowed (\\, @, spaces)")
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ClientError(f"{what} must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback(uri):
        raise ClientError(f"{what} must use https (http only for loopback addresses)")
    if parts.fragment:
        raise ClientError(f"{what} must not contain a fragment")
    if parts.username or parts.password:
        raise ClientError(f"{what} must not contain credentials")
    return uri


def validate_resource(uri: str) -> str:
    """A resource indicator (RFC 8707 §2): an absolute URI without fragment (and, as the
    RFC advises, without query), https unless loopback."""
    validate_uri(uri, what="resource")
    if urlsplit(uri).query:
        raise ClientError("a resource must not contain a query")
    return uri


def _without_port(uri: str) -> str:
    """`uri` with the loopback port removed, as text (only for URIs `is_loopback` took)."""
    return re.sub(r"^(http://(?:127\.0\.0\.1|\[::1\])):\d{1,5}", r"\1", uri)


class ClientCache:
    """Registrations read on every token request, kept for `ttl` seconds per process.

    A change made on this replica invalidates at once; other replicas see it within `ttl`
    (5 s by default): the window in which a removed client could still authenticate."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._rows: dict[str, tuple[float, Client | None]] = {}

    def get(self, session: Session, client_id: str) -> Client | None:
        hit = self._rows.get(client_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = session.get(Client, client_id)
        if row is not None:
            session.expunge(row)  # a read-only snapshot, shared by request threads
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[client_id] = (now + self.ttl, row)
        return row

    def fresh(self, client_id: str) -> bool:
        """Whether `get` would answer without the database."""
        hit = self._rows.get(client_id)
        return hit is not None and hit[0] > time.monotonic()

    def invalidate(self, client_id: str) -> None:
        self._rows.pop(client_id, None)


@dataclass
class Registration:
    client: Client
    secret: str | None


class Clients:
    def __init__(
        self,
        session: Session,
        *,
        clock: Clock,
        secret_hash: Callable[[str], str],
        audit: AuditSink,
        cache: ClientCache | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.secret_hash = secret_hash
        self.audit = audit
        self.cache = cache

    def register(
        self,
        *,
        name: str,
        redirect_uris: Iterable[str] = (),
        post_logout_redirect_uris: Iterable[str] = (),
        backchannel_logout_uri: str | None = None,
        auth_method: str = "client_secret_basic",
        jwks_uri: str | None = None,
        jwks: dict[str, Any] | None = None,
        scopes: Iterable[str] = (),
        grant_types: Iterable[str] = (),
        resources: Iterable[str] = (),
        id_token_alg: str = "ES256",
        statutory_purpose: str | None = None,
        department_uscc: str | None = None,
        sector_identifier: str | None = None,
        actor: str | None = None,
    ) -> Registration:
        name = name.strip()
        if not 1 <= len(name) <= 128:
            raise ClientError("a client name has 1 to 128 characters")
        if auth_method not in AUTH_METHODS:
            raise ClientError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
        grants = list(dict.fromkeys(grant_types)) or ["authorization_code", "refresh_token"]
        for g in grants:
            if g not in GRANT_TYPES:
                raise ClientError(f"grant type must be one of {', '.join(GRANT_TYPES)}")
        if auth_method == "none" and "client_credentials" in grants:
            raise ClientError("a public client cannot use client_credentials")
        redirects = [validate_uri(u, what="redirect URI") for u in redirect_uris]
        if "authorization_code" in grants and not redirects:
            raise ClientError("the authorization_code grant needs at least one redirect URI")
        post_logout = [
            validate_uri(u, what="post-logout redirect URI") for u in post_logout_redirect_uris
        ]
        if backchannel_logout_uri:
            validate_uri(backchannel_logout_uri, what="back-channel logout URI")
        if auth_method == "private_key_jwt" and not (jwks or jwks_uri):
            raise ClientError("private_key_jwt needs --jwks-uri or a JWKS")
        if jwks_uri:
            validate_uri(jwks_uri, what="JWKS URI")
        scope_list = list(dict.fromkeys(scopes)) or list(DEFAULT_SCOPES)
        for s in scope_list:
            if s not in KNOWN_SCOPES:
                raise ClientError(f"unknown scope {s!r}")
        if "id_number" in scope_list and not (statutory_purpose or "").strip():
            raise ClientError("the id_number scope needs a recorded statutory purpose")
        resource_list = [validate_resource(r) for r in dict.fromkeys(resources)]
        if len(resource_list) > 20:
            raise ClientError("at most 20 resources")
        if id_token_alg not in ID_TOKEN_ALGS:
            raise ClientError("ID token algorithm must be ES256 or RS256")
        uscc = normalise_uscc(department_uscc) if department_uscc else None
        client_id = f"tb_{secrets.token_hex(12)}"
        # OIDC Core §8.1 groups clients by redirect host; many department systems share a
        # provincial host, so each client is its own sector unless the operator names one
        # (systems of one department that may correlate their users).
        sector = (sector_identifier or "").strip() or client_id
        secret = None if auth_method in ("none", "private_key_jwt") else new_secret("tbcs_", 32)
        row = Client(
            client_id=client_id,
            name=name,
            secret_hash=self.secret_hash(secret) if secret else None,
            auth_method=auth_method,
            redirect_uris=redirects,
            post_logout_redirect_uris=post_logout,
            backchannel_logout_uri=backchannel_logout_uri,
            jwks_uri=jwks_uri,
            jwks=jwks,
            scopes=scope_list,
            grant_types=grants,
            resources=resource_list,
            id_token_alg=id_token_alg,
            sector_identifier=sector,
            statutory_purpose=statutory_purpose,
            department_uscc=uscc,
            status="active",
            created_at=self.clock.now(),
        )
        self.session.add(row)
        self.session.flush()
        self.audit.record(
            self.session,
            "client.created",
            actor=actor,
            client_id=client_id,
            details={"name": name, "auth_method": auth_method},
        )
        return Registration(row, secret)

    def get(self, client_id: str) -> Client | None:
        """An active client by id (a cached snapshot when this unit of work has a cache)."""
        if not client_id or len(client_id) > 64:
            return None
        if self.cache is not None:
            row = self.cache.get(self.session, client_id)
        else:
            row = self.session.get(Client, client_id)
        return row if row is not None and row.status == "active" else None

    def list(self) -> list[Client]:
        return list(self.session.execute(select(Client).order_by(Client.created_at)).scalars())

    def remove(self, client_id: str, *, actor: str | None = None) -> bool:
        row = self.session.get(Client, client_id)
        if row is None:
            return False
        self.session.delete(row)
        self.session.flush()
        if self.cache is not None:
            self.cache.invalidate(client_id)
        self.audit.record(self.session, "client.removed", actor=actor, client_id=client_id)
        return True

    def check_secret(self, client: Client, secret: str) -> bool:
        if client.secret_hash is None or not secret or len(secret) > 256:
            return False
        return constant_time_equal(client.secret_hash, self.secret_hash(secret))


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a registered client."""

    def __init__(self, row: Client, clients: Clients) -> None:
        self.row = row
        self._clients = clients
        self.client_id = row.client_id
        self.id_token_signed_response_alg = row.id_token_alg

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core §3.1.2.1: redirect_uri is required in every authentication request.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """At the authorization endpoint: what the client is registered for, minus the
        machine scopes, which only a client acting for itself may hold."""
        if not scope:
            return ""
        allowed = set(self.row.scopes) - MACHINE_SCOPES
        return str(list_to_scope([s for s in scope_to_list(scope) if s in allowed]))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if redirect_uri in self.row.redirect_uris:
            return True
        # RFC 8252 §7.3: a native (public) client's loopback port is chosen at run time.
        if self.row.auth_method == "none" and is_loopback(redirect_uri):
            bare = _without_port(redirect_uri)
            return any(is_loopback(u) and _without_port(u) == bare for u in self.row.redirect_uris)
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self._clients.check_secret(self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.row.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types

    @property
    def is_public(self) -> bool:
        return self.row.auth_method == "none"
