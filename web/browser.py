"""Browser state: cookies (`__Host-` prefixed, Secure, HttpOnly, SameSite=Lax under https —
ASVS 3.3), CSRF tokens bound to the browser cookie, locale, and page rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from kit.ids import constant_time_equal, new_secret
from web.i18n import Translator, pick_locale
from web.runtime import Runtime

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


class Browser:
    """Cookie names depend on the issuer's scheme: `__Host-` needs Secure, so plain-http
    development uses unprefixed names."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        secure = runtime.settings.secure_cookies
        prefix = "__Host-" if secure else ""
        self.secure = secure
        self.session_cookie = f"{prefix}tb_session"
        self.browser_cookie = f"{prefix}tb_browser"
        self.lang_cookie = "tb_lang"

    # -- the browser secret: binds interactions and CSRF tokens to this browser --------

    def secret(self, request: Request) -> tuple[str, bool]:
        """(secret, is_new). A new one must be set on the response with `remember`."""
        value = request.cookies.get(self.browser_cookie)
        if value and 20 <= len(value) <= 64:
            return value, False
        return new_secret("", 24), True

    def remember(self, response: Response, secret: str) -> None:
        response.set_cookie(
            self.browser_cookie, secret, httponly=True, secure=self.secure, samesite="lax", path="/"
        )

    def csrf_token(self, secret: str) -> str:
        return self.runtime.secrets.hmac("csrf", secret)

    def csrf_ok(self, request: Request, form: dict[str, str]) -> bool:
        secret = request.cookies.get(self.browser_cookie)
        token = form.get("csrf_token", "")
        return bool(secret and token and constant_time_equal(token, self.csrf_token(secret)))

    # -- the SSO session cookie --------------------------------------------------------

    def session_value(self, request: Request) -> str | None:
        return request.cookies.get(self.session_cookie)

    def set_session(self, response: Response, value: str) -> None:
        # No Max-Age: the server enforces idle and absolute limits; the cookie dies with
        # the browser.
        response.set_cookie(
            self.session_cookie, value, httponly=True, secure=self.secure, samesite="lax", path="/"
        )

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    # -- pages ---------------------------------------------------------------------------

    def translator(self, request: Request, ui_locales: str | None = None) -> Translator:
        return Translator(
            pick_locale(
                ui_locales or request.query_params.get("ui_locales"),
                request.cookies.get(self.lang_cookie),
            )
        )

    def render(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        ui_locales: str | None = None,
        secret: str | None = None,
        new_secret_cookie: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        t = self.translator(request, ui_locales)
        if secret is None:
            secret, new_secret_cookie = self.secret(request)
        if "back_path" not in context:  # where the language switch returns to
            context["back_path"] = request.url.path + (
                f"?{request.url.query}" if request.url.query else ""
            )
        html = TEMPLATES.get_template(template).render(
            t=t, csrf_token=self.csrf_token(secret), demo=self.runtime.demo, **context
        )
        response = HTMLResponse(html, status_code=status)
        if new_secret_cookie:
            self.remember(response, secret)
        return response


def see_other(url: str) -> RedirectResponse:
    """303 after a POST (RFC 9700 §4.12) and for every browser redirect we make."""
    return RedirectResponse(url, status_code=303)
