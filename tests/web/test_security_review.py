"""Regression tests for the findings of the first security review (each names the finding
it guards), over real HTTP on both databases."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt

from tests.web.live import FormBrowser, LiveServer, Receiver, new_phone, query
from tests.web.test_security import auth_url, logged_in, pkce, redeem


def test_review_1_backslash_loopback_redirect_cannot_smuggle_another_host(
    live: LiveServer, receiver: Receiver
) -> None:
    native = live.add_client(
        "Native app",
        "--redirect-uri",
        f"{receiver.base}/cb",
        "--auth-method",
        "none",
        "--scope",
        "openid",
    )
    native["redirect_uri"] = f"{receiver.base}/cb"
    _, challenge = pkce()
    hostile = f"http://evil.example\\@127.0.0.1:{receiver.port}/cb"
    for mode in ("query", "form_post"):
        page = httpx.get(
            auth_url(
                live,
                native,
                scope="openid",
                redirect_uri=hostile,
                response_mode=mode,
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )
        assert page.status_code == 400 and "location" not in page.headers
        assert 'action="http://evil' not in page.text
    # another loopback port is still fine for the native app (RFC 8252 §7.3)
    other_port = httpx.get(
        auth_url(
            live,
            native,
            scope="openid",
            redirect_uri=f"http://127.0.0.1:{receiver.port + 1}/cb",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert other_port.status_code == 200 and 'action="/login"' in other_port.text
    out = live.cli_fails(
        "client",
        "add",
        "--name",
        "x",
        "--redirect-uri",
        "http://evil.example\\@127.0.0.1:1/cb",
        "--json",
    )
    assert "not allowed" in out


def test_review_2_a_smuggled_return_target_is_never_followed(
    live: LiveServer, receiver: Receiver
) -> None:
    rp = live.add_client("RP", "--redirect-uri", f"{receiver.base}/cb", "--scope", "openid")
    rp["redirect_uri"] = f"{receiver.base}/cb"
    browser, user = logged_in(live, rp)
    start = browser.get(
        auth_url(live, rp, scope="openid", prompt="login", _return="https://evil.example/phish")
    )
    page = browser.follow(start)
    done = browser.follow(
        browser.post("/login", page, username=user["id_number"], password=user["password"])
    )
    assert done.headers["location"].startswith(rp["redirect_uri"])


def test_review_10_machine_scopes_never_reach_a_user_token(
    live: LiveServer, receiver: Receiver
) -> None:
    mixed = live.add_client(
        "Mixed", "--redirect-uri", f"{receiver.base}/cb", "--scope", "openid", "--scope", "admin"
    )
    mixed["redirect_uri"] = f"{receiver.base}/cb"
    browser, _ = logged_in(live, mixed)
    verifier, challenge = pkce()
    response = browser.follow(
        browser.get(
            auth_url(
                live,
                mixed,
                scope="openid admin",
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )
    )
    token = redeem(live, mixed, query(response.headers["location"])["code"], verifier).json()
    assert token["scope"].split() == ["openid"]
    refused = httpx.get(
        f"{live.url}/admin/v1/clients", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert refused.status_code == 403


def test_review_5_assertions_for_secret_clients_are_invalid_client_not_500(
    live: LiveServer,
) -> None:
    secret_client = live.add_client(
        "Secret", "--grant-type", "client_credentials", "--scope", "licence:read"
    )
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", private=True)
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256"},
        {
            "iss": secret_client["client_id"],
            "sub": secret_client["client_id"],
            "aud": live.url,
            "iat": now,
            "exp": now + 60,
            "jti": "x1",
        },
        key,
    )
    for path in ("/token", "/introspect"):
        response = httpx.post(
            f"{live.url}{path}",
            data={
                "grant_type": "client_credentials",
                "token": "t",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        assert response.status_code in (400, 401), response.text
        assert response.json()["error"] == "invalid_client"


def test_review_6_huge_bodies_are_refused_before_they_are_read(live: LiveServer) -> None:
    big = b"username=" + b"x" * (2 * 1024 * 1024)
    for path in ("/login", "/register", "/admin/v1/clients", "/token"):
        response = httpx.post(
            f"{live.url}{path}",
            content=big,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413, (path, response.status_code)


def test_review_4_sms_are_rationed_per_phone(live: LiveServer) -> None:
    from tests.web.live import new_id_number

    browser = FormBrowser(live)
    phone = new_phone()
    statuses = []
    for _ in range(7):
        page = browser.get("/register")
        statuses.append(
            browser.post(
                "/register", page, id_number=new_id_number(), name="测试", phone=phone
            ).status_code
        )
    assert statuses[:5] == [200] * 5 and statuses[-1] == 429
    with live.runtime.factory.begin() as session:  # the server is shared: reset quotas
        from idp.models import ThrottleCounter

        session.query(ThrottleCounter).delete()


@pytest.mark.parametrize(
    "claims",
    ['{"id_token":{"acr":{"values":5}}}', '{"userinfo":{"name":{"essential":"yes","values":[1]}}}'],
)
def test_review_low_hostile_claims_and_long_nonces_are_clean_errors(
    live: LiveServer, receiver: Receiver, claims: str
) -> None:
    rp = live.add_client("RP", "--redirect-uri", f"{receiver.base}/cb", "--scope", "openid")
    rp["redirect_uri"] = f"{receiver.base}/cb"
    response = httpx.get(auth_url(live, rp, scope="openid", claims=claims))
    assert response.status_code in (302, 303, 400)
    long_nonce = httpx.get(auth_url(live, rp, scope="openid", nonce="n" * 600))
    assert long_nonce.status_code in (302, 303)
    assert query(long_nonce.headers["location"])["error"] == "invalid_request"
    weird = httpx.get(auth_url(live, rp, scope="openid") + "&%E9%80%9A=1&%E9%80%9A=2")
    location = weird.headers.get("location", "")
    assert location.isascii()


def test_review_7_totp_enrolment_needs_the_password_and_never_replaces(
    live: LiveServer, receiver: Receiver
) -> None:
    rp = live.add_client("RP", "--redirect-uri", f"{receiver.base}/cb", "--scope", "openid")
    rp["redirect_uri"] = f"{receiver.base}/cb"
    browser, user = logged_in(live, rp)
    page = browser.get("/account")
    wrong = browser.post("/account/totp/start", page, current_password="not the password")
    assert 'data-testid="totp-secret"' not in wrong.text
    right = browser.post("/account/totp/start", page, current_password=user["password"])
    assert 'data-testid="totp-secret"' in right.text
    # a pending secret cannot be confirmed by another account's session
    other_browser, other = logged_in(live, rp)
    pending = right.text.split('name="pending" value="')[1].split('"')[0]
    secret = right.text.split('data-testid="totp-secret">')[1].split("<")[0]
    from datetime import UTC, datetime

    from idp.totp import code_at

    other_browser.post(
        "/account/totp/confirm",
        other_browser.get("/account"),
        pending=pending,
        otp=code_at(secret, datetime.now(UTC)),
    )
    with live.runtime.factory() as session:
        ctx = live.runtime.context(session)
        victim = ctx.accounts.find_by_id_number(other["id_number"])
        assert victim is not None and victim.totp_secret_enc is None
