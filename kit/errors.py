"""The error root. Every package derives its own root from `TongbanError`.

An error has a public `description` (safe to show to the caller, ASCII where a protocol
demands it) and a private `detail` for logs, as node-oidc-provider does.
"""

from __future__ import annotations


class TongbanError(Exception):
    #: short machine-readable code (an OAuth error code where one applies)
    code: str = "server_error"
    #: HTTP status the web layer maps this error to
    status: int = 400

    def __init__(self, description: str = "", *, detail: str = "") -> None:
        super().__init__(description or self.code)
        self.description = description or self.code
        self.detail = detail

    def __str__(self) -> str:
        return self.description


class NotFound(TongbanError):
    code = "not_found"
    status = 404


class InvalidInput(TongbanError):
    code = "invalid_input"
    status = 400
