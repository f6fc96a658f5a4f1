"""Bearer-token protection for our own APIs (RFC 6750 §2.1: header only; RFC 9068 §4
validation). `require_scope("admin")` is a FastAPI dependency returning the token claims."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from keys.jws import InvalidJws
from web.runtime import Runtime

bearer = HTTPBearer(auto_error=False, description="An access token from /token")


class BearerRejected(Exception):
    def __init__(self, status: int, error: str | None, description: str = "") -> None:
        self.status = status
        self.error = error
        self.description = description


def require_scope(scope: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    from fastapi import Depends

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> dict[str, Any]:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise BearerRejected(401, None)
        runtime: Runtime = request.app.state.runtime

        def check() -> dict[str, Any]:
            with runtime.factory() as session:
                return runtime.context(session).tokens.verify_access_token(credentials.credentials)

        try:
            claims = await run_in_threadpool(check)
        except InvalidJws:
            raise BearerRejected(401, "invalid_token", "The access token is not valid.") from None
        if scope not in str(claims.get("scope", "")).split():
            raise BearerRejected(403, "insufficient_scope", f"The {scope} scope is required.")
        if "gid" in claims or claims.get("sub") != claims.get("client_id"):
            # machine APIs answer a department system acting for itself, never a user token
            raise BearerRejected(
                403, "insufficient_scope", "A client_credentials token is required."
            )
        return claims

    return dependency
