"""Token (RFC 6749 §3.2), introspection (RFC 7662) and revocation (RFC 7009).

One implementation, `handle`, serves both the FastAPI routes (which document these
endpoints in OpenAPI) and `ProtocolFastPath`, a pure-ASGI front that answers the same
POSTs without routing and dependency machinery: these are the hot machine-to-machine
endpoints, and that machinery costs more CPU than issuing the token itself. A
client_credentials request needs no database round trip once the client is cached, so it
runs inline; anything that may wait on the database runs in the thread pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from idp.oauth import CoreRequest, CoreResponse, TongbanServer
from web.audit_batch import AuditBatcher
from web.http import FORM_LIMIT, parse_form, peer_address
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
) -> CoreResponse:
    """One protocol POST in its own unit of work. OAuth errors are responses (so the
    deliberate writes of a refusal — reuse revocation, replay guards — are committed).

    High-rate audit events go to `deferred` for group commit when a list is given (the
    caller must record them before answering); otherwise into this transaction."""
    session = runtime.factory()
    try:
        ctx = runtime.context(session, source=source, user_agent=headers.get("user-agent"))
        request = CoreRequest("POST", runtime.settings.issuer + path, headers, params)
        server = TongbanServer(ctx)
        endpoint = ENDPOINTS[path]
        response: CoreResponse = (
            server.create_token_response(request)
            if endpoint == "token"
            else server.create_endpoint_response(endpoint, request)
        )
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


def runs_inline(path: str, params: list[tuple[str, str]]) -> bool:
    """Only a client_credentials request with a cached client secret is pure CPU; a
    client assertion may need the client's JWKS fetched, which must not block the loop."""
    return (
        path == "/token"
        and ("grant_type", "client_credentials") in params
        and not any(k == "client_assertion" for k, _ in params)
    )


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


class ProtocolFastPath:
    """ASGI middleware answering POST /token, /introspect and /revoke, and the
    precomputed discovery and JWKS documents, directly."""

    def __init__(self, app: ASGIApp, runtime: Runtime, discovery: bytes) -> None:
        self.app = app
        self.runtime = runtime
        self.discovery = discovery
        self.batcher = AuditBatcher(runtime)

    async def _static(self, send: Send, body: bytes, media_type: bytes, max_age: int) -> None:
        headers = [
            (b"content-type", media_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"public, max-age=%d" % max_age),
            *_PUBLIC_CACHE,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] == "http" and scope["method"] == "GET":
            if path in (
                "/.well-known/openid-configuration",
                "/.well-known/oauth-authorization-server",
            ):
                await self._static(send, self.discovery, b"application/json", 3600)
                return
            if path == "/jwks":
                snapshot = self.runtime.keys()
                await self._static(send, snapshot.jwks_bytes, b"application/jwk-set+json", 300)
                return
        if scope["type"] != "http" or scope["method"] != "POST" or path not in ENDPOINTS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        body = await _read_body(receive)
        try:
            if body is None:
                response = _TOO_LARGE
            else:
                params = parse_form(headers.get("content-type", ""), body)
                client = scope.get("client")
                source = peer_address(
                    client[0] if client else None, headers, self.runtime.settings.trusted_proxies
                )
                if runs_inline(path, params):
                    events: list[dict[str, Any]] = []
                    response = handle(self.runtime, path, headers, params, source, deferred=events)
                    if self.runtime.settings.audit_machine_tokens:
                        await self.batcher.record(events)
                else:
                    response = await run_in_threadpool(
                        partial(handle, self.runtime, path, headers, params, source)
                    )
        except Exception:
            log.exception("protocol endpoint %s failed", path)
            response = _BROKEN
        status, raw_headers, payload = encode(response)
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})
