"""Tokens the provider issues and checks.

- Access tokens: JWT per RFC 9068 (`typ: at+jwt`), audience-restricted, ES256. Revocable
  through their `jti` or their grant (`gid`), checked at introspection and userinfo.
- ID tokens (OIDC Core §2), signed with the client's registered algorithm.
- Logout tokens (OIDC Back-Channel Logout §2.4, `typ: logout+jwt`).
- Refresh tokens: opaque (`tbrt_` prefix), stored as keyed hashes, rotated on use; a
  rotated token presented again revokes its whole family (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.config import IdpConfig
from idp.models import Grant, RefreshToken, RevokedAccessToken
from idp.token_cache import AccessTokenCache, pending_revocation
from keys.jws import InvalidJws, sign_compact, verify_compact
from keys.keyring import KeySnapshot
from kit.clock import Clock, epoch
from kit.ids import b64url, new_id, new_secret

ACCESS_TOKEN_TYP = "at+jwt"
LOGOUT_TOKEN_TYP = "logout+jwt"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class WouldBlock(Exception):
    """The answer needs the database, and the caller may not wait for it here."""


def half_hash(value: str) -> str:
    """`at_hash`/`c_hash` for SHA-256 algorithms (OIDC Core §3.1.3.6)."""
    return b64url(hashlib.sha256(value.encode("ascii")).digest()[:16])


class Tokens:
    def __init__(
        self,
        session: Session,
        *,
        keys: KeySnapshot,
        config: IdpConfig,
        clock: Clock,
        secret_hash: Callable[[str], str],
        cache: AccessTokenCache | None = None,
        client_active: Callable[[str], bool] | None = None,
    ) -> None:
        self.session = session
        self.keys = keys
        self.config = config
        self.clock = clock
        self.secret_hash = secret_hash
        self.cache = cache
        self.client_active = client_active

    # -- access tokens ----------------------------------------------------------------

    def access_token(
        self,
        *,
        client_id: str,
        sub: str,
        scope: str,
        gid: str | None = None,
        audience: str | list[str] | None = None,
        auth_time: datetime | None = None,
        acr: str | None = None,
        sid: str | None = None,
        act_for: dict[str, str] | None = None,
    ) -> tuple[str, int]:
        now = epoch(self.clock.now())
        ttl = self.config.access_token_ttl
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": sub,
            "aud": audience or self.config.issuer,
            "exp": now + ttl,
            "iat": now,
            "jti": new_id(),
            "client_id": client_id,
            "scope": scope,
        }
        if gid:
            claims["gid"] = gid
        if auth_time is not None:
            claims["auth_time"] = epoch(auth_time)
        if acr:
            claims["acr"] = acr
        if sid:
            claims["sid"] = sid
        if act_for:
            claims["act_for"] = act_for
        return sign_compact(self.keys.signer("ES256"), claims, typ=ACCESS_TOKEN_TYP), ttl

    def verify_access_token(
        self,
        token: str,
        *,
        any_audience: bool = False,
        may_block: bool = True,
    ) -> dict[str, Any]:
        """Check signature, type, issuer, expiry, audience, the client and revocation
        (RFC 9068 §4).

        Raises `InvalidJws` for anything wrong; the caller maps it to `invalid_token`.
        `any_audience` is for introspection and revocation, which answer about tokens
        issued for any resource server.
        With `may_block=False` (on the event loop) it raises `WouldBlock` instead of
        reading the database."""
        keys = self.keys.fingerprint
        claims = self.cache.verified(token, keys) if self.cache is not None else None
        if claims is None:
            _, claims = verify_compact(
                token, self.keys.verify_keys, algorithms=["ES256"], typ=ACCESS_TOKEN_TYP
            )
            if self.cache is not None:
                self.cache.remember(token, claims, keys)
        now = epoch(self.clock.now())
        if claims.get("iss") != self.config.issuer:
            raise InvalidJws("token was not issued here")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise InvalidJws("token expired")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else (aud or [])
        if not any_audience and self.config.issuer not in auds:
            raise InvalidJws("token is not meant for this resource")
        if self.client_active is not None and not self.client_active(str(claims.get("client_id"))):
            raise InvalidJws("the token's client is no longer registered")
        if self.is_revoked(claims, may_block=may_block):
            raise InvalidJws("token revoked")
        return claims

    def is_revoked(self, claims: dict[str, Any], *, may_block: bool = True) -> bool:
        cache = self.cache
        if cache is not None:
            known = cache.revoked(claims)
            if known is not None:
                return known
            if not may_block:
                raise WouldBlock("revocations must be read from the database")
            cache.sync(self.session)
            known = cache.revoked(claims)
            if known is not None:
                return known
        jti = claims.get("jti")
        if self.session.get(RevokedAccessToken, jti) is not None:
            return True
        gid = claims.get("gid")
        if gid:
            grant = self.session.get(Grant, gid)
            return grant is None or grant.revoked_at is not None
        return False

    def revoke_access_token(self, claims: dict[str, Any]) -> None:
        jti = str(claims["jti"])
        if self.session.get(RevokedAccessToken, jti) is None:
            now = self.clock.now()
            self.session.add(
                RevokedAccessToken(
                    jti=jti,
                    expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo),
                    revoked_at=now,
                )
            )
            self.session.flush()
            pending_revocation(self.session, "jti", jti, int(claims["exp"]))

    # -- ID and logout tokens ---------------------------------------------------------

    def id_token(
        self,
        *,
        alg: str,
        client_id: str,
        sub: str,
        auth_time: datetime,
        nonce: str | None,
        acr: str | None,
        amr: list[str] | None,
        sid: str | None,
        access_token: str | None,
        extra: dict[str, Any],
    ) -> str:
        now = epoch(self.clock.now())
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": sub,
            "aud": client_id,
            "exp": now + self.config.id_token_ttl,
            "iat": now,
            "auth_time": epoch(auth_time),
        }
        if nonce:
            claims["nonce"] = nonce
        if acr:
            claims["acr"] = acr
        if amr:
            claims["amr"] = amr
        if sid:
            claims["sid"] = sid
        if access_token:
            claims["at_hash"] = half_hash(access_token)
        claims.update(extra)
        return sign_compact(self.keys.signer(alg), claims, typ="JWT")

    def logout_token(self, *, alg: str, client_id: str, sub: str, sid: str) -> str:
        now = epoch(self.clock.now())
        claims = {
            "iss": self.config.issuer,
            "sub": sub,
            "aud": client_id,
            "iat": now,
            "exp": now + 120,
            "jti": new_id(),
            "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        return sign_compact(self.keys.signer(alg), claims, typ=LOGOUT_TOKEN_TYP)

    # -- grants and refresh tokens ----------------------------------------------------

    def new_grant(
        self,
        *,
        client_id: str,
        account_id: str | None,
        session_id: str | None,
        scope: str,
        auth_time: datetime | None,
        acr: str | None,
        amr: list[str] | None,
        claims: dict[str, Any] | None,
    ) -> Grant:
        now = self.clock.now()
        grant = Grant(
            id=new_id(),
            client_id=client_id,
            account_id=account_id,
            session_id=session_id,
            scope=scope,
            auth_time=auth_time,
            acr=acr,
            amr=amr,
            claims=claims,
            created_at=now,
            absolute_expires_at=now + timedelta(seconds=self.config.refresh_absolute_ttl),
        )
        self.session.add(grant)
        return grant

    def new_refresh_token(self, grant: Grant, scope: str) -> str:
        token = new_secret("tbrt_", 32)
        now = self.clock.now()
        self.session.add(
            RefreshToken(
                token_hash=self.secret_hash(token),
                grant_id=grant.id,
                scope=scope,
                created_at=now,
                expires_at=min(
                    now + timedelta(seconds=self.config.refresh_idle_ttl), grant.absolute_expires_at
                ),
            )
        )
        return token

    def find_refresh_token(self, token: str) -> RefreshToken | None:
        if not token.startswith("tbrt_") or len(token) > 128:
            return None
        return self.session.get(RefreshToken, self.secret_hash(token))

    def claim_refresh_token(self, row: RefreshToken) -> bool:
        """Mark a refresh token used, atomically: of two concurrent refreshes only one wins."""
        result = self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == row.token_hash, RefreshToken.rotated_at.is_(None))
            .values(rotated_at=self.clock.now())
        )
        return getattr(result, "rowcount", 0) == 1

    def revoke_grant(self, grant_id: str, reason: str) -> bool:
        result = self.session.execute(
            update(Grant)
            .where(Grant.id == grant_id, Grant.revoked_at.is_(None))
            .values(revoked_at=self.clock.now(), revoked_reason=reason)
        )
        revoked = getattr(result, "rowcount", 0) == 1
        if revoked:
            pending_revocation(self.session, "grant", grant_id)
        return revoked

    def revoke_session_grants(self, session_id: str) -> list[str]:
        """On logout: grants bound to the session end, except `offline_access` ones."""
        rows = self.session.execute(
            select(Grant).where(Grant.session_id == session_id, Grant.revoked_at.is_(None))
        ).scalars()
        revoked = []
        for grant in rows:
            if "offline_access" not in grant.scope.split():
                self.revoke_grant(grant.id, "logout")
                revoked.append(grant.id)
        return revoked

    def revoke_acting_grants(self, account_id: str, enterprise_id: str, reason: str) -> int:
        """Every live grant in which the account acted for the enterprise."""
        ids = list(
            self.session.execute(
                select(Grant.id).where(
                    Grant.account_id == account_id,
                    Grant.acting_for == enterprise_id,
                    Grant.revoked_at.is_(None),
                )
            ).scalars()
        )
        return sum(self.revoke_grant(gid, reason) for gid in ids)

    def revoke_account_grants(self, account_id: str, client_id: str | None, reason: str) -> int:
        query = select(Grant.id).where(Grant.account_id == account_id, Grant.revoked_at.is_(None))
        if client_id:
            query = query.where(Grant.client_id == client_id)
        ids = list(self.session.execute(query).scalars())
        for gid in ids:
            self.revoke_grant(gid, reason)
        return len(ids)

    def purge_expired(self) -> None:
        now = self.clock.now()
        self.session.query(RevokedAccessToken).filter(RevokedAccessToken.expires_at < now).delete()
        # Rotated tokens stay until they expire: reuse detection needs them.
        self.session.query(RefreshToken).filter(RefreshToken.expires_at < now).delete(
            synchronize_session=False
        )
