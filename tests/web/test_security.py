"""RFC 9700, OIDC Core and ASVS behaviours over real HTTP, on both databases."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text

from idp.models import ThrottleCounter
from tests.conftest import served
from tests.web.live import FormBrowser, LiveServer, Receiver, query


@pytest.fixture
def rp(live: LiveServer, receiver: Receiver) -> dict:
    reg = live.add_client(
        "Security RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--backchannel-logout-uri",
        f"{receiver.base}/bc",
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    return reg


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def auth_url(live: LiveServer, rp: dict, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": rp["client_id"],
        "redirect_uri": rp["redirect_uri"],
        "scope": "openid profile",
        "state": "s-" + secrets.token_hex(4),
        "nonce": secrets.token_hex(8),
        **extra,
    }
    return f"{live.url}/authorize?{urlencode({k: v for k, v in params.items() if v})}"


def logged_in(live: LiveServer, rp: dict) -> tuple[FormBrowser, dict]:
    user = live.add_user()
    browser = FormBrowser(live)
    _verifier, challenge = pkce()
    response = browser.login(
        browser.get(auth_url(live, rp, code_challenge=challenge, code_challenge_method="S256")),
        user,
    )
    assert "code=" in response.headers["location"]
    return browser, user


def code_for(live: LiveServer, rp: dict, browser: FormBrowser, **extra: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    response = browser.follow(
        browser.get(
            auth_url(live, rp, code_challenge=challenge, code_challenge_method="S256", **extra)
        )
    )
    return query(response.headers["location"])["code"], verifier


def redeem(
    live: LiveServer, rp: dict, code: str, verifier: str | None, redirect_uri: str | None = None
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri or rp["redirect_uri"],
    }
    if verifier:
        data["code_verifier"] = verifier
    return httpx.post(f"{live.url}/token", data=data, auth=(rp["client_id"], rp["client_secret"]))


@pytest.mark.parametrize(
    "bad",
    [
        "https://evil.example/cb",
        "{base}/callback/../x",
        "{base}/callback?extra=1",
        "{base}/CALLBACK",
        "",
    ],
)
def test_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(
    live: LiveServer, rp: dict, receiver: Receiver, bad: str
) -> None:
    response = httpx.get(auth_url(live, rp, redirect_uri=bad.format(base=receiver.base)))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_unknown_client_and_hostile_input_get_error_pages(live: LiveServer, rp: dict) -> None:
    assert httpx.get(f"{live.url}/authorize?client_id=nope").status_code == 400
    hostile = auth_url(live, rp, redirect_uri="http://\u202e\x00evil/")
    assert httpx.get(hostile).status_code == 400
    assert httpx.get(f"{live.url}/authorize?" + "a=" + "x" * 20000).status_code in (400, 414)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"request": "eyJ.x.y"}, "request_not_supported"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"claims": "{not json"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"prompt": "none"}, "login_required"),
    ],
)
def test_bad_requests_are_redirected_with_state_and_iss(
    live: LiveServer, rp: dict, extra: dict, error: str
) -> None:
    url = auth_url(live, rp, **extra)
    response = httpx.get(url)
    assert response.status_code in (302, 303), response.text[:300]
    params = query(response.headers["location"])
    assert params["error"] == error
    assert params["iss"] == live.url
    assert params["state"] == query(url)["state"]
    assert params.get("error_description", "").isascii()


def test_public_clients_must_use_pkce(live: LiveServer, receiver: Receiver) -> None:
    reg = live.add_client(
        "Native app",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--auth-method",
        "none",
        "--scope",
        "openid",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    response = httpx.get(auth_url(live, reg, scope="openid"))
    assert query(response.headers["location"])["error"] == "invalid_request"
    assert "client_secret" not in reg


def test_code_is_single_use_and_reuse_revokes_its_tokens(live: LiveServer, rp: dict) -> None:
    browser, _ = logged_in(live, rp)
    code, verifier = code_for(live, rp, browser)
    first = redeem(live, rp, code, verifier)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    second = redeem(live, rp, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    intro = httpx.post(
        f"{live.url}/introspect",
        data={"token": first.json()["access_token"]},
        auth=(rp["client_id"], rp["client_secret"]),
    ).json()
    assert intro == {"active": False}  # RFC 9700 §4.2.4


def test_pkce_verifier_is_enforced_and_downgrade_rejected(live: LiveServer, rp: dict) -> None:
    browser, _ = logged_in(live, rp)
    code, _verifier = code_for(live, rp, browser)
    assert redeem(live, rp, code, "w" * 50).json()["error"] == "invalid_grant"
    # a code requested without a challenge, redeemed with a verifier (RFC 9700 §4.8.2)
    response = browser.follow(browser.get(auth_url(live, rp)))
    plain_code = query(response.headers["location"])["code"]
    assert redeem(live, rp, plain_code, "v" * 50).json()["error"] == "invalid_request"


def test_code_is_bound_to_client_and_redirect_uri(
    live: LiveServer, rp: dict, receiver: Receiver
) -> None:
    browser, _ = logged_in(live, rp)
    code, verifier = code_for(live, rp, browser)
    other = live.add_client("Other", "--redirect-uri", f"{receiver.base}/callback")
    stolen = httpx.post(
        f"{live.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": rp["redirect_uri"],
        },
        auth=(other["client_id"], other["client_secret"]),
    )
    assert stolen.json()["error"] == "invalid_grant"
    code, verifier = code_for(live, rp, browser)
    wrong = redeem(live, rp, code, verifier, redirect_uri=rp["redirect_uri"] + "x")
    assert wrong.json()["error"] == "invalid_grant"


def test_token_endpoint_rejects_password_grant_bad_auth_and_junk(
    live: LiveServer, rp: dict
) -> None:
    ropc = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "password", "username": "a", "password": "b"},
        auth=(rp["client_id"], rp["client_secret"]),
    )
    assert ropc.json()["error"] == "unsupported_grant_type"
    bad = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials"},
        auth=(rp["client_id"], "tbcs_wrong"),
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    for body, ctype in (
        (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
        (b'{"grant_type":"client_credentials"}', "application/json"),
        (b"grant_type=" + b"x" * 100_000, "application/x-www-form-urlencoded"),
    ):
        response = httpx.post(f"{live.url}/token", content=body, headers={"content-type": ctype})
        assert 400 <= response.status_code < 500, response.text[:200]
        assert "error" in response.json()


def test_userinfo_takes_the_token_only_from_the_header(live: LiveServer, rp: dict) -> None:
    browser, _ = logged_in(live, rp)
    code, verifier = code_for(live, rp, browser)
    token = redeem(live, rp, code, verifier).json()["access_token"]
    none = httpx.get(f"{live.url}/userinfo")
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    body = httpx.post(f"{live.url}/userinfo", data={"access_token": token})
    assert body.status_code == 400
    assert httpx.get(f"{live.url}/userinfo?access_token={token}").status_code == 401
    ok = httpx.get(f"{live.url}/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["name"] == "测试市民"
    forged = httpx.get(f"{live.url}/userinfo", headers={"Authorization": f"Bearer {token}x"})
    assert (
        forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]
    )


def test_login_pages_are_hardened(live: LiveServer, rp: dict) -> None:
    browser = FormBrowser(live)
    page = browser.follow(browser.get(auth_url(live, rp)))
    assert 'name="username"' in page.text and 'name="csrf_token"' in page.text
    headers = page.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert "http" not in page.text.split("<main", 1)[0].split("stylesheet")[1][:40]
    cookie = next(c for c in browser.http.cookies.jar if c.name.endswith("tb_browser"))
    assert cookie.has_nonstandard_attr("HttpOnly")
    # no CSRF token: refused, no login
    no_csrf = browser.http.post("/login", data={"username": "x", "password": "y"})
    assert no_csrf.status_code == 400


def test_same_answer_for_unknown_and_known_users_then_throttling(
    live: LiveServer, rp: dict
) -> None:
    user = live.add_user()
    # The failure budget is per minute: start early in one, so the attempts below do not
    # straddle two windows (the count would restart and 429 might never come).
    if time.time() % 60 > 40:
        time.sleep(60.5 - time.time() % 60)
    browser = FormBrowser(live)
    page = browser.follow(browser.get(auth_url(live, rp)))
    known = browser.post("/login", page, username=user["id_number"], password="wrong-password!")
    unknown = browser.post(
        "/login", page, username="11010519491231002X", password="wrong-password!"
    )
    assert known.status_code == unknown.status_code == 401
    strip = lambda r: r.text.replace(user["id_number"], "").replace("11010519491231002X", "")  # noqa: E731
    assert (
        strip(known).replace('value="', "").split("csrf")[0]
        == strip(unknown).replace('value="', "").split("csrf")[0]
    )
    assert user["id_number"] not in live.log_path.read_text()
    try:
        statuses = [
            browser.post(
                "/login", page, username=f"1101052099010{i:04d}", password="wrong-password!"
            ).status_code
            for i in range(55)
        ]
        assert 429 in statuses and statuses.index(429) >= 45
    finally:  # the live server is shared: give the other tests their budget back
        with live.runtime.factory.begin() as session:
            session.query(ThrottleCounter).delete()


def test_form_post_response_mode(live: LiveServer, rp: dict) -> None:
    browser, _ = logged_in(live, rp)
    _verifier, challenge = pkce()
    page = browser.follow(
        browser.get(
            auth_url(
                live,
                rp,
                response_mode="form_post",
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )
    )
    assert page.status_code == 200
    assert f'action="{rp["redirect_uri"]}"' in page.text
    assert 'name="code"' in page.text and 'name="iss"' in page.text
    assert "<noscript>" in page.text


def test_no_open_redirect_from_language_switch(live: LiveServer) -> None:
    for back in ("//evil.example/", "https://evil.example/", "/\\evil"):
        response = httpx.get(f"{live.url}/lang", params={"to": "en", "back": back})
        assert response.status_code == 303
        assert not response.headers["location"].startswith(("//", "http"))


def test_ui_locales_and_login_hint(live: LiveServer, rp: dict) -> None:
    page = httpx.get(
        auth_url(live, rp, ui_locales="en", login_hint="+8613900001111"), follow_redirects=True
    )
    assert "<h1>Log in</h1>" in page.text and 'value="+8613900001111"' in page.text
    hinted_id = "11010519491231002X"
    page = httpx.get(auth_url(live, rp, login_hint=hinted_id), follow_redirects=True)
    assert "<h1>登录</h1>" in page.text and hinted_id not in page.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def strict(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server that lets an address start only three logins a minute."""
    data_dir = tmp_path_factory.mktemp(f"strict-{request.param}")
    limit = {"TONGBAN_INTERACTIONS_PER_ADDRESS_PER_MINUTE": "3"}
    with served(request.param, data_dir, limit) as server:
        yield server


def test_an_address_may_start_only_so_many_logins_a_minute(
    strict: LiveServer, receiver: Receiver
) -> None:
    """Every login a client starts stores an interaction until it is used or expires: a
    flood of anonymous /authorize requests must not fill the database."""
    rp = strict.add_client("Busy RP", "--redirect-uri", f"{receiver.base}/callback")
    rp["redirect_uri"] = f"{receiver.base}/callback"
    for _ in range(2):
        browser = FormBrowser(strict)
        assert browser.follow(browser.get(auth_url(strict, rp))).status_code == 200
    assert httpx.get(f"{strict.url}/login").status_code == 200  # a direct visit counts too
    refused = httpx.get(auth_url(strict, rp))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) <= 60
    assert httpx.get(f"{strict.url}/login").status_code == 429
    with strict.runtime.engine.connect() as conn:  # nothing stored for the refused ones
        assert conn.execute(text("SELECT count(*) FROM interaction")).scalar_one() == 3
