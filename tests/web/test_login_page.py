"""The login page as the authorization endpoint serves it, and the front that serves the
login pages ahead of FastAPI's routing (`web/page_front.py`)."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from kit.errors import TongbanError
from tests.web.live import FormBrowser, LiveServer
from tests.web.test_security import auth_url, rp  # noqa: F401 (fixture)
from web.http import problem
from web.page_front import PageEndpoints

_INTERACTION = re.compile(r'name="interaction" value="([^"]+)"')


def test_the_authorization_request_is_answered_with_the_login_page(
    live: LiveServer,
    rp: dict,  # noqa: F811
) -> None:
    user = live.add_user()
    browser = FormBrowser(live)
    page = browser.get(auth_url(live, rp))
    assert page.status_code == 200 and 'action="/login"' in page.text
    found = _INTERACTION.search(page.text)
    assert found is not None
    interaction = found.group(1)

    # the language switch comes back to the same interaction, not a new login
    switch = re.search(r'href="(/lang\?[^"]+)"', page.text)
    assert switch is not None
    back = unquote(switch.group(1).replace("&amp;", "&").split("back=", 1)[1])
    assert back == f"/login?interaction={interaction}"
    english = browser.follow(browser.get(switch.group(1).replace("&amp;", "&")))
    assert english.status_code == 200 and 'lang="en"' in english.text
    assert _INTERACTION.search(english.text).group(1) == interaction  # type: ignore[union-attr]

    done = browser.post("/login", english, username=user["id_number"], password=user["password"])
    done = browser.follow(done)
    if done.status_code == 200:  # first use: consent
        done = browser.post("/consent", done, decision="allow")
    assert done.status_code == 303 and "code=" in done.headers["location"]


def test_an_authorization_request_by_post_is_redirected_to_the_login_page(
    live: LiveServer,
    rp: dict,  # noqa: F811
) -> None:
    """After a POST the browser gets a 303 (RFC 9700 §4.12), never a page."""
    params = dict(httpx.URL(auth_url(live, rp)).params)
    response = httpx.post(f"{live.url}/authorize", data=params)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?interaction=")


class _Refused(TongbanError):
    status = 409
    code = "refused"


async def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def _refuse(request: Request) -> Response:
    raise _Refused("no")


async def _ok(request: Request) -> Response:
    return PlainTextResponse(request.app)


async def _domain_error(request: Request, exc: TongbanError) -> Response:
    return problem(exc.status, exc.code, "refused here")


def test_the_page_front_answers_errors_as_the_application_would() -> None:
    front = PageEndpoints(
        "the app",  # type: ignore[arg-type]
        {("GET", "/boom"): _boom, ("GET", "/refuse"): _refuse, ("GET", "/ok"): _ok},
        lambda: {TongbanError: _domain_error},
    )

    async def ask(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=front)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    ok = asyncio.run(ask("/ok"))
    assert ok.status_code == 200 and ok.text == "the app"  # request.app as routed
    refused = asyncio.run(ask("/refuse"))
    assert refused.status_code == 409 and refused.json()["detail"] == "refused here"
    broken = asyncio.run(ask("/boom"))
    assert broken.status_code == 500
    assert broken.headers["content-type"] == "application/problem+json"
    assert "a bug" not in broken.text and "Traceback" not in broken.text
    assert front.serves({"type": "http", "method": "GET", "path": "/ok"})
    assert not front.serves({"type": "http", "method": "POST", "path": "/ok"})
    assert not front.serves({"type": "websocket", "path": "/ok"})
