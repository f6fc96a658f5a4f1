"""Client authentication methods, algorithms, claims, prompts, consent, logout, key
rotation and back-channel retries, over real HTTP on both databases."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.web.live import FormBrowser, LiveServer, Receiver, query
from tests.web.test_security import auth_url, code_for, logged_in, pkce, redeem


def keyset(live: LiveServer) -> KeySet:
    return KeySet.import_key_set(httpx.get(f"{live.url}/jwks").json())


def test_private_key_jwt_client_authentication(live: LiveServer, tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "dept-key-1"}, private=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    reg = live.add_client(
        "Signed client",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(jwks_file),
        "--grant-type",
        "client_credentials",
        "--scope",
        "licence:read",
    )
    assert "client_secret" not in reg

    def assertion(signing_key: ECKey, *, aud: str = live.url) -> str:
        now = int(time.time())
        return jwt.encode(
            {"alg": "ES256", "kid": "dept-key-1"},
            {
                "iss": reg["client_id"],
                "sub": reg["client_id"],
                "aud": aud,
                "iat": now,
                "exp": now + 60,
                "jti": secrets.token_hex(8),
            },
            signing_key,
        )

    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    # the token endpoint URL is an accepted audience too (RFC 7523 §3)
    token = httpx.post(
        f"{live.url}/token",
        data={**data, "client_assertion": assertion(key, aud=f"{live.url}/token")},
    )
    assert token.status_code == 200, token.text
    claims = jwt.decode(token.json()["access_token"], keyset(live)).claims
    assert claims["client_id"] == reg["client_id"]
    # the same assertion twice: its jti is single-use
    once = {**data, "client_assertion": assertion(key)}
    assert httpx.post(f"{live.url}/token", data=once).status_code == 200
    replay = httpx.post(f"{live.url}/token", data=once)
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"
    # signed by another key under the same kid, or for another audience: refused
    stranger = ECKey.generate_key("P-256", parameters={"kid": "dept-key-1"}, private=True)
    for bad in (assertion(stranger), assertion(key, aud="https://elsewhere.example")):
        refused = httpx.post(f"{live.url}/token", data={**data, "client_assertion": bad})
        assert refused.json()["error"] == "invalid_client"


def test_rs256_id_tokens_for_clients_that_ask(live: LiveServer, receiver: Receiver) -> None:
    reg = live.add_client(
        "RSA RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--id-token-alg",
        "RS256",
        "--scope",
        "openid",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    browser, _ = logged_in(live, reg)
    code, verifier = code_for(live, reg, browser, scope="openid")
    token = redeem(live, reg, code, verifier).json()
    decoded = jwt.decode(token["id_token"], keyset(live), algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256"


def test_id_number_only_with_statutory_scope_and_consent(
    live: LiveServer, receiver: Receiver
) -> None:
    lawful = live.add_client(
        "Civil affairs",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "id_number",
        "--statutory-purpose",
        "婚姻登记条例第七条 核验当事人身份",
    )
    lawful["redirect_uri"] = f"{receiver.base}/callback"
    user = live.add_user()
    browser = FormBrowser(live)
    verifier, challenge = pkce()
    start = browser.get(
        auth_url(
            live,
            lawful,
            scope="openid id_number",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    page = browser.follow(
        browser.post(
            "/login", browser.follow(start), username=user["id_number"], password=user["password"]
        )
    )
    assert "婚姻登记条例第七条" in page.text  # the purpose is shown on the consent page
    assert user["id_number"] not in page.text
    done = browser.follow(browser.post("/consent", page, decision="allow"))
    token = redeem(live, lawful, query(done.headers["location"])["code"], verifier).json()
    info = httpx.get(
        f"{live.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    ).json()
    assert info["id_number"] == user["id_number"]
    # a client not registered for the scope never gets it
    other = live.add_client(
        "Other",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    other["redirect_uri"] = f"{receiver.base}/callback"
    verifier, challenge = pkce()
    page = browser.follow(
        browser.get(
            auth_url(
                live,
                other,
                scope="openid id_number profile",
                code_challenge=challenge,
                code_challenge_method="S256",
            )
        )
    )
    assert "身份号码" not in page.text  # consent lists only what the client may get
    done = browser.follow(browser.post("/consent", page, decision="allow"))
    token = redeem(live, other, query(done.headers["location"])["code"], verifier).json()
    assert "id_number" not in token["scope"].split()
    info = httpx.get(
        f"{live.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    ).json()
    assert "id_number" not in info and info["name"] == "测试市民"


def test_claims_parameter_puts_requested_claims_in_the_id_token(
    live: LiveServer, receiver: Receiver
) -> None:
    reg = live.add_client(
        "Claims RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    browser, _ = logged_in(live, reg)
    claims = json.dumps({"id_token": {"name": None}})
    code, verifier = code_for(live, reg, browser, claims=claims)
    token = redeem(live, reg, code, verifier).json()
    assert jwt.decode(token["id_token"], keyset(live)).claims["name"] == "测试市民"


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}])
def test_prompt_login_and_max_age_force_a_fresh_login(
    live: LiveServer, receiver: Receiver, extra: dict
) -> None:
    reg = live.add_client(
        "Fresh RP", "--redirect-uri", f"{receiver.base}/callback", "--scope", "openid"
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    browser, user = logged_in(live, reg)
    time.sleep(1.1)
    response = browser.follow(browser.get(auth_url(live, reg, scope="openid", **extra)))
    assert 'name="password"' in response.text
    done = browser.post("/login", response, username=user["id_number"], password=user["password"])
    done = browser.follow(done)
    assert "code=" in done.headers["location"]


def test_consent_is_remembered_prompted_and_can_be_denied(
    live: LiveServer, receiver: Receiver
) -> None:
    reg = live.add_client(
        "Consent RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    browser, _ = logged_in(live, reg)
    again = browser.follow(browser.get(auth_url(live, reg)))
    assert "code=" in again.headers["location"]  # remembered
    url = auth_url(live, reg, prompt="consent")
    page = browser.follow(browser.get(url))
    assert 'value="deny"' in page.text
    denied = browser.post("/consent", page, decision="deny")
    params = query(denied.headers["location"])
    assert params["error"] == "access_denied" and params["state"] == query(url)["state"]
    assert params["iss"] == live.url


def test_logout_without_hint_asks_first_and_rejects_unknown_redirects(
    live: LiveServer, receiver: Receiver
) -> None:
    reg = live.add_client(
        "Logout RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--post-logout-redirect-uri",
        f"{receiver.base}/bye",
        "--scope",
        "openid",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    browser, _ = logged_in(live, reg)
    bad = browser.get(
        f"/logout?client_id={reg['client_id']}&post_logout_redirect_uri=https://evil.example/"
    )
    assert bad.status_code == 400
    page = browser.get(
        f"/logout?client_id={reg['client_id']}"
        f"&post_logout_redirect_uri={receiver.base}/bye&state=s1"
    )
    assert page.status_code == 200 and 'value="logout"' in page.text
    done = browser.http.post(
        "/logout",
        data={
            **browser.form(page),
            "decision": "logout",
            "client_id": reg["client_id"],
            "post_logout_redirect_uri": f"{receiver.base}/bye",
            "state": "s1",
        },
    )
    assert done.status_code == 303 and done.headers["location"] == f"{receiver.base}/bye?state=s1"
    after = browser.follow(browser.get(auth_url(live, reg, prompt="none")))
    assert query(after.headers["location"])["error"] == "login_required"


def test_backchannel_logout_is_retried_until_delivered(
    live: LiveServer, receiver: Receiver
) -> None:
    reg = live.add_client(
        "Flaky RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--backchannel-logout-uri",
        f"{receiver.base}/bc",
        "--scope",
        "openid",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    browser, _ = logged_in(live, reg)
    receiver.status = 503
    page = browser.get("/account")
    browser.post("/account/logout-everywhere", page)
    time.sleep(1.5)
    assert receiver.received == []
    receiver.status = 200
    tokens = receiver.wait(1, timeout=20)
    assert len(tokens) == 1
    from idp.models import BackchannelDelivery

    deadline = time.time() + 10
    while time.time() < deadline:  # the receiver answers before the row is updated
        with live.runtime.factory() as session:
            row = session.query(BackchannelDelivery).filter_by(client_id=reg["client_id"]).one()
            if row.status == "delivered":
                break
        time.sleep(0.2)
    assert row.status == "delivered" and row.attempts >= 2


def test_keys_rotate_without_downtime(live: LiveServer, receiver: Receiver) -> None:
    reg = live.add_client(
        "Rotation RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
        "--scope",
        "licence:read",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    auth = (reg["client_id"], reg["client_secret"])
    old = httpx.post(f"{live.url}/token", data={"grant_type": "client_credentials"}, auth=auth)
    old_kid = jwt.decode(old.json()["access_token"], keyset(live)).header["kid"]
    rotated = live.cli("keys", "rotate")
    assert len(rotated["new_keys"]) == 2
    deadline = time.time() + 10  # each server reloads its key snapshot every second here
    published: set[str] = set()
    while not set(rotated["new_keys"]) <= published and time.time() < deadline:
        published = {k["kid"] for k in httpx.get(f"{live.url}/jwks").json()["keys"]}
        time.sleep(0.2)
    assert old_kid in published and set(rotated["new_keys"]) <= published
    deadline = time.time() + 40
    new_kid = old_kid
    while new_kid == old_kid and time.time() < deadline:
        time.sleep(0.5)
        fresh = httpx.post(
            f"{live.url}/token", data={"grant_type": "client_credentials"}, auth=auth
        )
        new_kid = jwt.decode(fresh.json()["access_token"], keyset(live)).header["kid"]
    assert new_kid in rotated["new_keys"]
    intro = httpx.post(
        f"{live.url}/introspect", data={"token": old.json()["access_token"]}, auth=auth
    ).json()
    assert intro["active"] is True  # tokens signed by the retiring key still work


def test_problem_details_for_unknown_routes_and_admin_auth(live: LiveServer) -> None:
    missing = httpx.get(f"{live.url}/no/such/thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["status"] == 404
    anonymous = httpx.get(f"{live.url}/admin/v1/clients")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
    weak = live.add_client(
        "No admin", "--grant-type", "client_credentials", "--scope", "licence:read"
    )
    token = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials"},
        auth=(weak["client_id"], weak["client_secret"]),
    ).json()["access_token"]
    forbidden = httpx.get(
        f"{live.url}/admin/v1/clients", headers={"Authorization": f"Bearer {token}"}
    )
    assert forbidden.status_code == 403


def test_admin_api_manages_clients_and_users(live: LiveServer) -> None:
    from tests.web.live import new_id_number

    admin = live.add_client(
        "Operator console", "--grant-type", "client_credentials", "--scope", "admin"
    )
    token = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=(admin["client_id"], admin["client_secret"]),
    ).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{live.url}/admin/v1/clients",
        headers=h,
        json={"name": "Via API", "redirect_uris": ["https://dept.example.gov.cn/cb"]},
    )
    assert created.status_code == 201 and created.json()["client_secret"].startswith("tbcs_")
    listed = httpx.get(f"{live.url}/admin/v1/clients", headers=h).json()
    assert created.json()["client_id"] in {c["client_id"] for c in listed}
    assert all(c["client_secret"] is None for c in listed)
    bad = httpx.post(
        f"{live.url}/admin/v1/clients",
        headers=h,
        json={"name": "Bad", "redirect_uris": ["http://evil.example/cb"]},
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith(
        "application/problem+json"
    )
    number = new_id_number()
    user = httpx.post(
        f"{live.url}/admin/v1/users",
        headers=h,
        json={"id_number": number, "name": "王五", "password": "a long enough passphrase"},
    )
    assert user.status_code == 201
    body = user.json()
    assert number not in json.dumps(body) and body["id_number_masked"].endswith(number[-2:])
    wrong = httpx.post(
        f"{live.url}/admin/v1/users",
        headers=h,
        json={
            "id_number": number[:-1] + ("0" if number[-1] != "0" else "1"),
            "name": "x",
            "password": "a long enough passphrase",
        },
    )
    assert wrong.status_code == 400
    disabled = httpx.post(
        f"{live.url}/admin/v1/users/{body['account_id']}/status",
        headers=h,
        json={"status": "disabled"},
    )
    assert disabled.json()["status"] == "disabled"
