"""End to end over real HTTP with an independent client library (Authlib's OAuth 2
client): SSO across two departments, step-up, refresh, revoke, single logout."""

from __future__ import annotations

import secrets

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.totp import code_at
from tests.web.live import FormBrowser, LiveServer, Receiver, query


def rp(live: LiveServer, receiver: Receiver, name: str, *extra: str) -> tuple[dict, OAuth2Client]:
    reg = live.add_client(
        name,
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--post-logout-redirect-uri",
        f"{receiver.base}/",
        "--backchannel-logout-uri",
        f"{receiver.base}/backchannel-logout",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "phone",
        "--scope",
        "offline_access",
        *extra,
    )
    client = OAuth2Client(
        reg["client_id"],
        reg["client_secret"],
        scope="openid profile phone",
        redirect_uri=f"{receiver.base}/callback",
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    return reg, client


def jwks(live: LiveServer) -> KeySet:
    return KeySet.import_key_set(httpx.get(f"{live.url}/jwks").json())


def start(
    client: OAuth2Client, live: LiveServer, browser: FormBrowser, **params: str
) -> tuple[httpx.Response, str, str, str]:
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(
        f"{live.url}/authorize", code_verifier=verifier, nonce=nonce, **params
    )
    return browser.get(url), state, verifier, nonce


def finish(
    client: OAuth2Client, live: LiveServer, response: httpx.Response, state: str, verifier: str
) -> dict:
    assert response.status_code == 303, response.text[:300]
    location = response.headers["location"]
    params = query(location)
    assert params["state"] == state
    assert params["iss"] == live.url  # RFC 9207
    return dict(
        client.fetch_token(
            f"{live.url}/token", authorization_response=location, code_verifier=verifier
        )
    )


def test_discovery_advertises_what_clients_rely_on(live: LiveServer) -> None:
    meta = httpx.get(f"{live.url}/.well-known/openid-configuration").json()
    assert meta["issuer"] == live.url
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert {"RS256", "ES256"} <= set(meta["id_token_signing_alg_values_supported"])
    assert "none" not in meta["id_token_signing_alg_values_supported"]
    assert meta["backchannel_logout_supported"] and meta["backchannel_logout_session_supported"]
    assert meta["end_session_endpoint"] == f"{live.url}/logout"
    keys = httpx.get(meta["jwks_uri"])
    assert "max-age" in keys.headers["cache-control"]
    for key in keys.json()["keys"]:
        assert "d" not in key


def test_single_sign_on_step_up_refresh_revoke_and_single_logout(
    live: LiveServer, receiver: Receiver
) -> None:
    user = live.add_user(phone="+8613812345678")
    reg_a, client_a = rp(live, receiver, "Department A")
    _reg_b, client_b = rp(live, receiver, "Department B")
    browser = FormBrowser(live)

    # log in once at department A
    response, state, verifier, nonce = start(client_a, live, browser)
    response = browser.login(response, user)
    token_a = finish(client_a, live, response, state, verifier)
    claims = jwt.decode(token_a["id_token"], jwks(live)).claims
    assert claims["nonce"] == nonce and claims["aud"] == reg_a["client_id"]
    assert claims["acr"] == "urn:tongban:acr:password" and claims["amr"] == ["pwd"]
    assert "sid" in claims

    # department B: a code with no password prompt (consent on first use only)
    response, state_b, verifier_b, _ = start(client_b, live, browser)
    response = browser.follow(response)
    if response.status_code == 200:  # first use of B: the consent page, no login form
        assert 'name="password"' not in response.text
        response = browser.follow(browser.post("/consent", response, decision="allow"))
    token_b = finish(client_b, live, response, state_b, verifier_b)
    claims_b = jwt.decode(token_b["id_token"], jwks(live)).claims
    assert claims_b["sub"] != claims["sub"]  # pairwise per department
    assert claims_b["sid"] == claims["sid"]

    # userinfo at B with the header token
    info = httpx.get(
        f"{live.url}/userinfo", headers={"Authorization": f"Bearer {token_b['access_token']}"}
    ).json()
    assert info == {
        "sub": claims_b["sub"],
        "name": "测试市民",
        "phone_number": "+8613812345678",
        "phone_number_verified": True,
    }

    # step up with TOTP: enrol on the account page, then B asks for the higher level
    page = browser.get("/account")
    page = browser.post("/account/totp/start", page, current_password=user["password"])
    secret = page.text.split('data-testid="totp-secret">')[1].split("<")[0]
    from datetime import UTC, datetime, timedelta

    browser.post(
        "/account/totp/confirm",
        page,
        pending=page.text.split('name="pending" value="')[1].split('"')[0],
        otp=code_at(secret, datetime.now(UTC)),
    )
    response, state_b, verifier_b, _ = start(
        client_b, live, browser, acr_values="urn:tongban:acr:mfa"
    )
    assert response.headers["location"].startswith("/login/otp")
    page = browser.get(response.headers["location"])
    # the enrolment spent this step's code; the next step's is within the allowed skew
    next_step = datetime.now(UTC) + timedelta(seconds=30)
    response = browser.follow(browser.post("/login/otp", page, otp=code_at(secret, next_step)))
    token_b2 = finish(client_b, live, response, state_b, verifier_b)
    stepped = jwt.decode(token_b2["id_token"], jwks(live)).claims
    assert stepped["acr"] == "urn:tongban:acr:mfa" and stepped["amr"] == ["pwd", "otp"]
    assert stepped["sid"] == claims["sid"]  # the same SSO session, re-authenticated

    # refresh at B rotates the refresh token; the old one is then refused
    refreshed = client_b.refresh_token(f"{live.url}/token", refresh_token=token_b2["refresh_token"])
    assert refreshed["refresh_token"] != token_b2["refresh_token"]
    reused = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": token_b2["refresh_token"]},
        auth=(client_b.client_id, client_b.client_secret),
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    # revoke (RFC 7009): the family is gone after reuse detection; revoke A's token too
    revoked = httpx.post(
        f"{live.url}/revoke",
        data={"token": token_a["access_token"]},
        auth=(client_a.client_id, client_a.client_secret),
    )
    assert revoked.status_code == 200
    intro = httpx.post(
        f"{live.url}/introspect",
        data={"token": token_a["access_token"]},
        auth=(client_a.client_id, client_a.client_secret),
    ).json()
    assert intro == {"active": False}

    # log out at B (RP-initiated, with id_token_hint): A's back-channel gets a logout token
    logout = browser.get(
        f"/logout?id_token_hint={token_b2['id_token']}"
        f"&post_logout_redirect_uri={receiver.base}/&state=bye"
    )
    assert logout.status_code == 303
    assert logout.headers["location"] == f"{receiver.base}/?state=bye"
    tokens = receiver.wait(count=2)
    assert len(tokens) >= 2  # A and B both took part in the session
    keyset = jwks(live)
    auds = set()
    for raw in tokens:
        decoded = jwt.decode(raw, keyset)
        assert decoded.header["typ"] == "logout+jwt"
        c = decoded.claims
        assert c["iss"] == live.url and "nonce" not in c
        assert "http://schemas.openid.net/event/backchannel-logout" in c["events"]
        auds.add(c["aud"])
    assert reg_a["client_id"] in auds

    # A's session is over: prompt=none now says login_required
    response, state, _, _ = start(client_a, live, browser, prompt="none")
    params = query(response.headers["location"])
    assert params["error"] == "login_required" and params["state"] == state


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_gives_an_audience_restricted_jwt(live: LiveServer, auth: str) -> None:
    reg = live.add_client(
        "Machine",
        "--grant-type",
        "client_credentials",
        "--scope",
        "licence:read",
        "--auth-method",
        auth,
    )
    client = OAuth2Client(reg["client_id"], reg["client_secret"], token_endpoint_auth_method=auth)
    token = client.fetch_token(f"{live.url}/token", grant_type="client_credentials")
    decoded = jwt.decode(token["access_token"], jwks(live))
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["aud"] == live.url and decoded.claims["client_id"] == reg["client_id"]
    assert decoded.claims["scope"] == "licence:read"
