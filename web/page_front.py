"""The login pages' front: the authorization endpoint and the login form, answered without
FastAPI's routing, dependency and middleware machinery.

A login is two requests (the authorization request, answered with the login page, and
the form's POST), and that machinery is a large share of a page request's CPU. The
endpoints are the same functions the FastAPI routes call (the routes stay for the
OpenAPI document), and the front keeps what the middlewares would have done: the body
limit, the page security headers, and the application's error handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from web.http import problem

log = logging.getLogger("tongban")

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Any], Any]


class PageEndpoints:
    """An ASGI app serving a fixed set of (method, path) endpoints."""

    def __init__(
        self,
        app: ASGIApp,
        endpoints: dict[tuple[str, str], Endpoint],
        handlers: Callable[[], Mapping[Any, ErrorHandler]],
    ) -> None:
        self.app = app
        self.endpoints = endpoints
        self.handlers = handlers

    def serves(self, scope: Scope) -> bool:
        return scope["type"] == "http" and (scope["method"], scope["path"]) in self.endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app  # what `request.app` gives the endpoint, as under routing
        request = Request(scope, receive)
        endpoint = self.endpoints[(scope["method"], scope["path"])]
        try:
            response = await endpoint(request)
        except Exception as exc:  # the application's handlers, as its middleware would
            response = await self._error(request, exc)
        await response(scope, receive, send)

    async def _error(self, request: Request, exc: Exception) -> Response:
        handlers = self.handlers()
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                response: Response = await handler(request, exc)
                return response
        # Never a stack trace to the caller; the log has it.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "The server could not complete the request.")
