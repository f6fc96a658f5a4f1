"""Token (RFC 6749 §3.2), introspection (RFC 7662) and revocation (RFC 7009).

One implementation, `handle`, serves both the FastAPI routes (which document these
endpoints in OpenAPI) and `ProtocolFront`, a pure-ASGI front that answers the same
POSTs without routing and dependency machinery: these are the hot machine-to-machine
endpoints, and that machinery costs more CPU than issuing the token itself. A
client_credentials token or an introspection needs no database round trip once the
client and the revocations are known in memory, so it runs on the event loop; anything
that would wait on the database runs in the thread pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from idp.oauth import CoreRequest, CoreResponse
from idp.tokens import WouldBlock
from web.audit_process import AuditProcess, AuditUnavailable
from web.http import FORM_LIMIT, parse_form, peer_address, security_headers
from web.runtime import Runtime

log = logging.getLogger("tongban.protocol")

ENDPOINTS = {"/token": "token", "/introspect": "introspection", "/revoke": "revocation"}
_TOO_LARGE = CoreResponse(
    413, {"error": "invalid_request", "error_description": "The request body is too large."}
)
_BROKEN = CoreResponse(
    500,
    {"error": "server_error", "error_description": "The server could not complete the request."},
)


def handle(
    runtime: Runtime,
    path: str,
    headers: Mapping[str, str],
    params: list[tuple[str, str]],
    source: str | None,
    *,
    deferred: list[dict[str, Any]] | None = None,
    may_block: bool = True,
) -> CoreResponse | None:
    """One protocol POST in its own unit of work. OAuth errors are responses (so the
    deliberate writes of a refusal — reuse revocation, replay guards — are committed).

    High-rate audit events go to `deferred` for group commit when a list is given (the
    caller must record them before answering); otherwise into this transaction. With
    `may_block=False` (on the event loop) the answer is None, with nothing written, when
    the request needs the database: the caller then runs it again in the thread pool."""
    session = runtime.factory()
    try:
        ctx = runtime.context(
            session, source=source, user_agent=headers.get("user-agent"), may_block=may_block
        )
        request = CoreRequest("POST", runtime.settings.issuer + path, headers, params)
        endpoint = ENDPOINTS[path]
        with runtime.oauth_server.bound(ctx) as server:
            try:
                response: CoreResponse = (
                    server.create_token_response(request)
                    if endpoint == "token"
                    else server.create_endpoint_response(endpoint, request)
                )
            except WouldBlock:
                if may_block:
                    raise
                session.rollback()
                return None
        if deferred is None:
            ctx.record_deferred()
        else:
            deferred.extend(ctx.deferred)
        if session.in_transaction():
            session.commit()
        return response
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def may_run_inline(path: str, params: list[tuple[str, str]]) -> bool:
    """Requests that are pure CPU once the client and revocations are known in memory:
    a client_credentials token and an introspection. A client assertion may need the
    client's JWKS fetched, which must not hold up the event loop."""
    if any(k == "client_assertion" for k, _ in params):
        return False
    if path == "/token":
        return ("grant_type", "client_credentials") in params
    return path == "/introspect"


def encode(response: CoreResponse) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = (
        json.dumps(response.body, separators=(",", ":")).encode()
        if isinstance(response.body, dict)
        else str(response.body or "").encode()
    )
    headers = {k.lower(): v for k, v in response.headers}
    headers.setdefault("content-type", "application/json")
    headers.setdefault("cache-control", "no-store")
    headers["content-length"] = str(len(body))
    return response.status, [(k.encode(), v.encode()) for k, v in headers.items()], body


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= FORM_LIMIT:
            chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks) if size <= FORM_LIMIT else None


_PUBLIC_CACHE = [(b"access-control-allow-origin", b"*")]
_DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class ProtocolFront:
    """Answers POST /token, /introspect and /revoke, and the precomputed discovery and
    JWKS documents, ahead of the application's middleware stack (`web.app.TongbanApp`):
    on these hot machine-to-machine paths, routing and middleware cost more CPU than
    the work itself."""

    def __init__(self, runtime: Runtime, discovery: bytes, recorder: AuditProcess | None) -> None:
        self.runtime = runtime
        self.discovery = discovery
        #: group commit of machine tokens' events, when serving
        self.recorder = recorder
        self.security = security_headers(page=False, https=runtime.settings.secure_cookies)

    async def _send(
        self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": headers + self.security}
        )
        await send({"type": "http.response.body", "body": body})

    async def _static(self, send: Send, body: bytes, media_type: bytes, max_age: int) -> None:
        headers = [
            (b"content-type", media_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"public, max-age=%d" % max_age),
            *_PUBLIC_CACHE,
        ]
        await self._send(send, 200, headers, body)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request if it is one of ours; False leaves it to the application."""
        if scope["type"] != "http":
            return False
        path = scope["path"]
        method = scope["method"]
        if method == "GET":
            if path in _DISCOVERY_PATHS:
                await self._static(send, self.discovery, b"application/json", 3600)
                return True
            if path == "/jwks":
                snapshot = self.runtime.keys()
                await self._static(send, snapshot.jwks_bytes, b"application/jwk-set+json", 300)
                return True
            return False
        if method != "POST" or path not in ENDPOINTS:
            return False
        headers = Headers(scope=scope)
        body = await _read_body(receive)
        try:
            if body is None:
                response = _TOO_LARGE
            else:
                response = await self._protocol(scope, path, headers, body)
        except AuditUnavailable as exc:  # known and logged where it happens
            log.warning("protocol endpoint %s: %s", path, exc)
            response = _BROKEN
        except Exception:
            log.exception("protocol endpoint %s failed", path)
            response = _BROKEN
        status, raw_headers, payload = encode(response)
        await self._send(send, status, raw_headers, payload)
        return True

    async def _protocol(
        self, scope: Scope, path: str, headers: Headers, body: bytes
    ) -> CoreResponse:
        runtime = self.runtime
        params = parse_form(headers.get("content-type", ""), body)
        client = scope.get("client")
        source = peer_address(
            client[0] if client else None, headers, runtime.settings.trusted_proxies
        )
        recorder = self.recorder
        if recorder is not None and may_run_inline(path, params):
            events: list[dict[str, Any]] = []
            response = handle(
                runtime, path, headers, params, source, deferred=events, may_block=False
            )
            if response is not None:
                if events and runtime.settings.audit_machine_tokens:
                    await recorder.record(events)
                return response
        answer = await run_in_threadpool(partial(handle, runtime, path, headers, params, source))
        assert answer is not None  # may_block: always an answer
        return answer
