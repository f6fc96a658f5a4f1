"""Resource indicators (RFC 8707): a client names the resource server a token is for and
gets an access token whose `aud` is that server, never one it is not registered for."""

from __future__ import annotations

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.web.live import FormBrowser, LiveServer, Receiver, query
from tests.web.test_security import auth_url, pkce

LICENCES = "https://licences.example.gov.cn/api"
PERMITS = "https://permits.example.gov.cn/api"


def claims(live: LiveServer, token: str) -> dict:
    keys = KeySet.import_key_set(httpx.get(f"{live.url}/jwks").json())
    return dict(jwt.decode(token, keys).claims)


def token(live: LiveServer, auth: tuple[str, str], **data: object) -> httpx.Response:
    return httpx.post(f"{live.url}/token", data=data, auth=auth)  # type: ignore[arg-type]


def test_client_credentials_tokens_are_for_the_named_resource(live: LiveServer) -> None:
    machine = live.add_client(
        "Licence checker",
        "--grant-type",
        "client_credentials",
        "--scope",
        "licence:read",
        "--resource",
        LICENCES,
        "--resource",
        PERMITS,
    )
    auth = (machine["client_id"], machine["client_secret"])
    one = token(live, auth, grant_type="client_credentials", resource=LICENCES)
    assert one.status_code == 200
    assert claims(live, one.json()["access_token"])["aud"] == LICENCES
    both = token(live, auth, grant_type="client_credentials", resource=[LICENCES, PERMITS])
    assert claims(live, both.json()["access_token"])["aud"] == [LICENCES, PERMITS]
    default = token(live, auth, grant_type="client_credentials")
    assert claims(live, default.json()["access_token"])["aud"] == live.url
    refused = token(
        live, auth, grant_type="client_credentials", resource="https://elsewhere.example/api"
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
    # the resource server introspects a token meant for it
    intro = httpx.post(
        f"{live.url}/introspect", data={"token": one.json()["access_token"]}, auth=auth
    ).json()
    assert intro["active"] is True and intro["aud"] == LICENCES


def test_code_flow_tokens_narrow_to_the_authorized_resources(
    live: LiveServer, receiver: Receiver
) -> None:
    rp = live.add_client(
        "Permit office",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--resource",
        LICENCES,
        "--resource",
        PERMITS,
    )
    rp["redirect_uri"] = f"{receiver.base}/callback"
    auth = (rp["client_id"], rp["client_secret"])
    user = live.add_user()
    browser = FormBrowser(live)

    # an unregistered resource is refused at the authorization endpoint, with state
    _, challenge = pkce()
    bad = browser.get(
        auth_url(
            live,
            rp,
            resource="https://elsewhere.example/api",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert query(bad.headers["location"])["error"] == "invalid_target"

    verifier, challenge = pkce()
    url = auth_url(
        live,
        rp,
        scope="openid offline_access",
        prompt="consent",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    url += "&" + "&".join(f"resource={r}" for r in (LICENCES, PERMITS))
    page = browser.follow(browser.get(url))
    page = browser.follow(
        browser.post("/login", page, username=user["id_number"], password=user["password"])
    )
    if 'name="decision"' in page.text:
        page = browser.follow(browser.post("/consent", page, decision="allow"))
    code = query(page.headers["location"])["code"]
    base = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": rp["redirect_uri"]}  # fmt: skip

    # a resource outside the authorized ones is refused and does not spend the code
    outside = token(live, auth, **base, resource="https://elsewhere.example/api")
    assert outside.status_code == 400 and outside.json()["error"] == "invalid_target"
    issued = token(live, auth, **base, resource=LICENCES)
    assert issued.status_code == 200, issued.text
    assert claims(live, issued.json()["access_token"])["aud"] == LICENCES

    # a refresh may name another resource of the grant, and only those
    refresh = issued.json()["refresh_token"]
    narrowed = token(live, auth, grant_type="refresh_token", refresh_token=refresh,
                     resource=PERMITS)  # fmt: skip
    assert narrowed.status_code == 200, narrowed.text
    assert claims(live, narrowed.json()["access_token"])["aud"] == PERMITS
    again = token(live, auth, grant_type="refresh_token",
                  refresh_token=narrowed.json()["refresh_token"],
                  resource="https://elsewhere.example/api")  # fmt: skip
    assert again.json()["error"] == "invalid_target"
    # ... and that mistake did not spend the refresh token
    still = token(live, auth, grant_type="refresh_token",
                  refresh_token=narrowed.json()["refresh_token"])  # fmt: skip
    assert still.status_code == 200
    assert claims(live, still.json()["access_token"])["aud"] == [LICENCES, PERMITS]


def test_a_resource_must_be_an_absolute_uri_without_fragment_or_query(live: LiveServer) -> None:
    for bad in ("https://api.example/x#frag", "https://api.example/x?q=1", "/relative"):
        error = live.cli_fails(
            "client", "add", "--name", "Bad", "--grant-type", "client_credentials",
            "--scope", "licence:read", "--resource", bad, "--json",
        )  # fmt: skip
        assert "resource" in error
