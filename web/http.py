"""Adapters between Starlette and the protocol core, and the cross-cutting HTTP rules:
security headers, client address (RFC 9700 §4.13), RFC 9457 problem details."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers

from idp.context import Context
from idp.oauth import CoreRequest, CoreResponse
from web.runtime import Runtime

JSON_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}

#: ASVS 3.4, RFC 9700 §4.16: no framing, no sniffing, no referrer leaks, strict CSP with
#: no third-party sources.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(*, page: bool, https: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response carries: pages get the strict CSP and `no-store`,
    API responses a CSP that allows nothing (they are never rendered)."""
    extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
    if page:
        extra += [
            (b"content-security-policy", PAGE_CSP.encode()),
            (b"x-frame-options", b"DENY"),
            (b"cache-control", b"no-store"),
        ]
    else:
        extra.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
    if https:
        extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return extra


def peer_address(peer: str | None, headers: Mapping[str, str], trusted: list[str]) -> str | None:
    """The client's address: the peer's, or X-Forwarded-For's last hop when the peer is a
    trusted proxy (RFC 9700 §4.13: client-supplied forwarding headers are not believed)."""
    if not peer or not trusted:
        return peer
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not any(peer_ip in ipaddress.ip_network(net, strict=False) for net in trusted):
        return peer
    forwarded = headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    return hops[-1] if hops else peer


def client_address(request: Request, trusted: list[str]) -> str | None:
    return peer_address(request.client.host if request.client else None, request.headers, trusted)


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """RFC 9457 problem details."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if extra:
        body.update(extra)
    return JSONResponse(
        body,
        status_code=status,
        media_type="application/problem+json",
        headers={**JSON_HEADERS, **(headers or {})},
    )


def core_request(request: Request, params: list[tuple[str, str]]) -> CoreRequest:
    """The request as the protocol core sees it. Its URI is built on the configured issuer,
    not the Host header: behind a TLS-terminating proxy the raw URL is plain http."""
    runtime: Runtime = request.app.state.runtime
    uri = runtime.settings.issuer + request.url.path
    if request.url.query:
        uri += "?" + request.url.query
    return CoreRequest(request.method, uri, Headers(scope=request.scope), params)


FORM_LIMIT = 64 * 1024


def parse_form(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """An urlencoded body as pairs; oversized, undecodable or non-form bodies give none."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return []
    if len(body) > FORM_LIMIT:
        return []
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return []


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    return parse_form(request.headers.get("content-type", ""), await request.body())


def to_response(resp: CoreResponse) -> Response:
    headers = dict(resp.headers)
    if isinstance(resp.body, dict | list):
        content = json.dumps(resp.body, separators=(",", ":")).encode()
        headers.setdefault("Content-Type", "application/json")
    else:
        content = (resp.body or "").encode() if isinstance(resp.body, str) else resp.body or b""
    headers.setdefault("Cache-Control", "no-store")
    return Response(content, status_code=resp.status, headers=headers)


@contextmanager
def unit_of_work(runtime: Runtime, request: Request) -> Iterator[Context]:
    """The request owns the transaction: commit when the handler returns, roll back when
    it raises. OAuth error *responses* are returns, so deliberate writes made while
    refusing a request (reuse revocation, failure counters) are kept."""
    session = runtime.factory()
    try:
        ctx = runtime.context(
            session,
            source=client_address(request, runtime.settings.trusted_proxies),
            user_agent=request.headers.get("user-agent"),
            hold_audit=True,
        )
        yield ctx
        ctx.record_deferred()  # the unit of work's events, in its transaction
        if session.in_transaction():  # cached-only requests never touched the database
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
