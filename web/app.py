"""The FastAPI application factory."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idp.errors import InteractionGone
from idp.throttle import Throttle
from kit.errors import TongbanError
from web import (
    account_routes,
    admin_routes,
    login_routes,
    oidc_routes,
    register_routes,
    seal_admin_routes,
    signing_routes,
    verify_page,
)
from web.audit_process import AuditProcess
from web.auth import BearerRejected
from web.browser import Browser
from web.discovery import metadata_bytes
from web.http import problem, security_headers
from web.page_front import PageEndpoints
from web.protocol_endpoints import ProtocolFront
from web.runtime import Runtime, build_runtime
from web.seed import is_demo
from web.settings import Settings
from web.workers import delivery_loop, maintenance_loop

log = logging.getLogger("tongban")

API_PREFIXES = (
    "/token",
    "/introspect",
    "/revoke",
    "/userinfo",
    "/jwks",
    "/.well-known",
    "/admin/",
    "/api/",
    "/openapi.json",
)


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot token path)."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self._page = security_headers(page=True, https=https)
        self._api = security_headers(page=False, https=https)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        page = not path.startswith(API_PREFIXES) and not path.startswith("/static/")
        extra = self._page if page else self._api

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: Bodies above these sizes are refused with 413 before any handler reads them.
BODY_LIMIT = 1024 * 1024
LARGE_BODY_PATHS = {
    "/api/v1/seal": 40 * 1024 * 1024,
    "/api/v1/verify": 40 * 1024 * 1024,
    "/verify": 40 * 1024 * 1024,
}


class BodyLimit:
    """Read at most the allowed body (by Content-Length and by what actually arrives) and
    replay it to the app; anything larger is answered 413 without being held in memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = LARGE_BODY_PATHS.get(scope["path"], BODY_LIMIT)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _too_large(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send) -> None:
    payload = (
        b'{"type":"about:blank","title":"Payload Too Large","status":413,'
        b'"detail":"The request body is too large."}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class TongbanApp(FastAPI):
    """The application, with the protocol front answered before any middleware."""

    front: ProtocolFront | None = None
    pages: PageEndpoints | None = None
    page_app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None and await self.front.answer(scope, receive, send):
            return
        if self.pages is not None and self.page_app is not None and self.pages.serves(scope):
            await self.page_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None, background: bool = True
) -> TongbanApp:
    runtime = runtime or build_runtime(settings)
    delivery = delivery_loop(runtime)
    maintenance = maintenance_loop(runtime)
    # Serving, the audit process sequences the log and group-commits machine tokens'
    # events; without background work, each token records its event in its own
    # transaction.
    process = AuditProcess(runtime.settings) if background else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.keys()  # first start creates the signing keys
        runtime.demo = runtime.settings.mode == "development" and is_demo(runtime)
        # Everything built so far (modules, mappers, compiled SQL, templates) lives as
        # long as the process: keep it out of the cyclic collector's generations, whose
        # full passes over it otherwise cost about a quarter of a login's CPU.
        gc.collect()
        gc.freeze()
        if process is not None:
            await process.start()
        if background:
            delivery.start()
            maintenance.start()
        yield
        if background:
            delivery.stop()
            maintenance.stop()
        if process is not None:
            await process.stop()

    app = TongbanApp(
        title="Tongban 通办",
        version="0.1.0",
        summary="Identity and e-certificate trust service of the provincial government-service "
        "platform: OpenID Connect provider, electronic seals and e-licences.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads third-party scripts; the JSON is at /openapi.json
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.browser = Browser(runtime)
    app.state.throttle = Throttle(_redis(runtime.settings))
    app.state.sms_throttle = Throttle(_redis(runtime.settings), window=3600)
    app.state.discovery = metadata_bytes(runtime.settings.issuer)
    app.state.deliveries = delivery

    app.include_router(oidc_routes.router)
    app.include_router(login_routes.router)
    app.include_router(account_routes.router)
    app.include_router(register_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(signing_routes.router)
    app.include_router(seal_admin_routes.router)
    app.include_router(verify_page.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, https=runtime.settings.secure_cookies)
    app.front = ProtocolFront(runtime, app.state.discovery, process)
    app.pages = PageEndpoints(
        app,
        {
            ("GET", "/authorize"): oidc_routes.authorization_endpoint,
            ("POST", "/authorize"): oidc_routes.authorization_endpoint,
            ("GET", "/login"): login_routes.login_page,
            ("POST", "/login"): login_routes.login_submit,
        },
        lambda: app.exception_handlers,
    )
    app.page_app = SecurityHeaders(BodyLimit(app.pages), https=runtime.settings.secure_cookies)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return problem(
            400,
            "Invalid request",
            "The request does not match the schema.",
            extra={"errors": errors},
        )

    @app.exception_handler(BearerRejected)
    async def bearer_rejected(request: Request, exc: BearerRejected) -> Response:
        challenge = 'Bearer realm="tongban"'
        if exc.error:
            challenge += f', error="{exc.error}", error_description="{exc.description}"'
        return problem(
            exc.status,
            exc.error or "unauthorized",
            exc.description or "An access token is required.",
            headers={"WWW-Authenticate": challenge},
        )

    @app.exception_handler(InteractionGone)
    async def interaction_gone(request: Request, exc: InteractionGone) -> Response:
        # a second submit of a step another request has just completed
        b: Browser = app.state.browser
        secret, _ = b.secret(request)
        return login_routes.expired_page(request, b, secret)

    @app.exception_handler(TongbanError)
    async def domain_error(request: Request, exc: TongbanError) -> Response:
        return problem(exc.status, exc.code, exc.description)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Never a stack trace to the caller; the log has it.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "The server could not complete the request.")

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        from web.browser import see_other

        return see_other("/account")

    return app


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _redis(settings: Settings) -> Any:
    if not settings.redis_url:
        return None
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_timeout=1.0)
