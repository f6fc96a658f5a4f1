"""The citizen's account page over real HTTP on both databases: what it shows (masked
identifiers only), consent revocation, password change (re-authentication first, other
sessions logged out) and CSRF protection of every POST."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from idp.models import Account, Consent, SsoSession
from tests.web.live import FormBrowser, LiveServer, new_id_number, new_phone, query

REDIRECT = "http://127.0.0.1:9/account-cb"
PASSWORD = "an account page passphrase"
HIDDEN_VALUE = re.compile(r'value="[^"]*"')


# -- helpers ---------------------------------------------------------------------------------


def new_user(live: LiveServer, *, phone: str | None = None, name: str = "账户页市民") -> dict:
    number = new_id_number()
    with live.runtime.factory.begin() as s:
        account = (
            live.runtime.context(s)
            .accounts.create(
                id_number=number, name=name, phone=phone, password=PASSWORD, verified=True
            )
            .account
        )
        account_id = account.id
    return {"id_number": number, "password": PASSWORD, "phone": phone, "account_id": account_id}


def password_hash(live: LiveServer, account_id: str) -> str:
    with live.runtime.factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        return account.password_hash


def live_sessions(live: LiveServer, account_id: str) -> list[str]:
    with live.runtime.factory() as s:
        return list(
            s.scalars(
                select(SsoSession.id).where(
                    SsoSession.account_id == account_id, SsoSession.ended_at.is_(None)
                )
            )
        )


def has_consent(live: LiveServer, account_id: str, client_id: str) -> bool:
    with live.runtime.factory() as s:
        return s.get(Consent, (account_id, client_id)) is not None


def direct_login(live: LiveServer, user: dict, password: str | None = None) -> FormBrowser:
    """Log in at /login directly: the citizen lands on the account page."""
    browser = FormBrowser(live)
    page = browser.get("/login")
    done = browser.post(
        "/login", page, username=user["id_number"], password=password or user["password"]
    )
    assert done.status_code == 303, done.text[:300]
    landed = browser.follow(done)
    assert landed.status_code == 200 and str(landed.url).endswith("/account"), landed.text[:300]
    return browser


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(
    live: LiveServer, rp: dict, browser: FormBrowser, scope: str = "openid profile", **extra: str
) -> tuple[httpx.Response, str]:
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": rp["client_id"],
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": secrets.token_hex(6),
        "nonce": secrets.token_hex(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return browser.get(f"{live.url}/authorize?{urlencode(params)}"), verifier


def redeem(live: LiveServer, rp: dict, location: str, verifier: str) -> dict:
    assert location.startswith(REDIRECT), location
    response = httpx.post(
        f"{live.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": query(location)["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(rp["client_id"], rp["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def refresh(live: LiveServer, rp: dict, token: str) -> httpx.Response:
    return httpx.post(
        f"{live.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(rp["client_id"], rp["client_secret"]),
    )


def silent(live: LiveServer, rp: dict, browser: FormBrowser) -> dict[str, str]:
    """A `prompt=none` authorization request: the redirect's parameters."""
    response, _ = authorize(live, rp, browser, prompt="none")
    assert response.status_code in (302, 303), response.text[:300]
    return query(response.headers["location"])


def visible(page: httpx.Response) -> str:
    """The page without hidden-field values (CSRF tokens are random text)."""
    return HIDDEN_VALUE.sub('value=""', page.text)


@pytest.fixture(scope="module")
def rp(live: LiveServer) -> dict:
    return live.add_client(
        "Account Page RP",
        "--redirect-uri",
        REDIRECT,
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "offline_access",
    )


# -- tests -----------------------------------------------------------------------------------


def test_profile_shows_masked_id_number_and_phone_only(live: LiveServer) -> None:
    phone = new_phone()
    user = new_user(live, phone=phone, name="掩码测试")
    browser = direct_login(live, user)
    page = browser.get("/account")
    assert page.status_code == 200
    number = user["id_number"]
    text = visible(page)
    masked = f"{number[:3]}{'*' * 13}{number[-2:]}"
    assert f'data-testid="masked-id">{masked}</td>' in text
    assert "掩码测试" in text
    assert number not in text and number.lower() not in text
    born = number[6:14]
    for shown in (born, f"{born[:4]}-{born[4:6]}-{born[6:]}", f"{born[:4]}年"):
        assert shown not in text, shown  # never the birth date
    assert f"{phone[:6]}****{phone[-4:]}" in text
    assert phone not in text and phone[3:] not in text
    assert number not in live.log_path.read_text()


def test_revoking_consent_ends_refresh_tokens_and_asks_for_consent_again(
    live: LiveServer, rp: dict
) -> None:
    user = new_user(live)
    browser = FormBrowser(live)
    start, verifier = authorize(live, rp, browser, scope="openid profile offline_access")
    done = browser.login(start, user)
    tokens = redeem(live, rp, done.headers["location"], verifier)
    rotated = refresh(live, rp, tokens["refresh_token"])
    assert rotated.status_code == 200
    refresh_token = rotated.json()["refresh_token"]
    assert has_consent(live, user["account_id"], rp["client_id"])

    page = browser.get("/account")
    assert "Account Page RP" in page.text
    assert f'name="client_id" value="{rp["client_id"]}"' in page.text
    revoked = browser.post("/account/consents/revoke", page, client_id=rp["client_id"])
    assert revoked.status_code == 303 and revoked.headers["location"] == "/account?done=revoked"
    after = browser.get(revoked.headers["location"])
    assert "已撤销授权。" in after.text
    assert f'value="{rp["client_id"]}"' not in after.text
    assert not has_consent(live, user["account_id"], rp["client_id"])

    # the department's tokens are dead, offline_access included
    dead = refresh(live, rp, refresh_token)
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    intro = httpx.post(
        f"{live.url}/introspect",
        data={"token": rotated.json()["access_token"]},
        auth=(rp["client_id"], rp["client_secret"]),
    ).json()
    assert intro == {"active": False}

    # still logged in, but the department must ask again
    again, _ = authorize(live, rp, browser)
    page = browser.follow(again)
    assert page.status_code == 200 and "/consent" in str(page.url)
    assert 'name="decision"' in page.text and 'name="password"' not in page.text
    quiet = silent(live, rp, browser)
    assert quiet["error"] == "consent_required"


def test_password_change_needs_the_current_password_and_ends_other_sessions(
    live: LiveServer, rp: dict
) -> None:
    user = new_user(live)
    here = direct_login(live, user)
    other = FormBrowser(live)  # the same citizen on another device, known to the department
    start, _ = authorize(live, rp, other)
    assert "code" in query(other.login(start, user).headers["location"])
    assert "code" in silent(live, rp, other)
    before = password_hash(live, user["account_id"])
    new = "a completely new account passphrase"

    page = here.get("/account")
    wrong = here.post(
        "/account/password", page, current_password="not my password at all", new_password=new
    )
    assert wrong.status_code == 200 and 'role="alert"' in wrong.text
    assert "账号或密码不正确" in wrong.text
    weak = here.post("/account/password", page, current_password=PASSWORD, new_password="short")
    assert weak.status_code == 200 and 'role="alert"' in weak.text
    assert password_hash(live, user["account_id"]) == before
    assert "code" in silent(live, rp, other)  # nothing ended on a refused change

    changed = here.post("/account/password", page, current_password=PASSWORD, new_password=new)
    assert changed.status_code == 303 and changed.headers["location"] == "/account?done=password"
    assert password_hash(live, user["account_id"]) != before
    kept = here.get(changed.headers["location"])
    assert kept.status_code == 200 and "密码已修改，其他设备已退出登录。" in kept.text
    assert len(live_sessions(live, user["account_id"])) == 1

    assert silent(live, rp, other)["error"] == "login_required"
    assert other.get("/account").status_code == 303

    fresh = FormBrowser(live)
    old_try = fresh.post(
        "/login", fresh.get("/login"), username=user["id_number"], password=PASSWORD
    )
    assert old_try.status_code == 401
    direct_login(live, user, password=new)


def test_posts_without_a_csrf_token_change_nothing(live: LiveServer, rp: dict) -> None:
    user = new_user(live)
    browser = FormBrowser(live)
    start, _ = authorize(live, rp, browser)
    assert "code" in query(browser.login(start, user).headers["location"])
    before = password_hash(live, user["account_id"])
    sessions = live_sessions(live, user["account_id"])
    assert len(sessions) == 1

    stranger = FormBrowser(live)
    foreign = stranger.form(stranger.get("/login"))["csrf_token"]  # another browser's token
    new = "a new passphrase that must not apply"
    for token in (None, "", foreign):
        extra = {} if token is None else {"csrf_token": token}
        for path, data in (
            ("/account/password", {"current_password": PASSWORD, "new_password": new}),
            ("/account/consents/revoke", {"client_id": rp["client_id"]}),
            ("/account/logout-everywhere", {}),
        ):
            response = browser.http.post(path, data={**data, **extra})
            assert response.status_code == 303, (path, token)
            assert response.headers["location"] == "/account", (path, token)

    assert password_hash(live, user["account_id"]) == before
    assert has_consent(live, user["account_id"], rp["client_id"])
    assert live_sessions(live, user["account_id"]) == sessions
    assert browser.get("/account").status_code == 200


def test_the_account_page_needs_a_session(live: LiveServer) -> None:
    anonymous = httpx.get(f"{live.url}/account")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    browser = FormBrowser(live)
    page = browser.get("/login")  # a browser cookie and a valid CSRF token, but no session
    response = browser.post(
        "/account/password", page, current_password=PASSWORD, new_password="x" * 20
    )
    assert response.status_code == 303 and response.headers["location"] == "/login"
    response = browser.follow(browser.post("/account/consents/revoke", page, client_id="tb_x"))
    assert response.status_code == 200 and str(response.url).endswith("/login")
    browser.http.cookies.set("tb_session", "not-a-real-session-cookie")
    forged = browser.http.get("/account")
    assert forged.status_code == 303 and forged.headers["location"] == "/login"
