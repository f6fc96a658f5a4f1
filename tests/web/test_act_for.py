"""An agent (经办人) logs in once and says whom the login acts for: themself or one of the
enterprises they are an agent of. Department systems that ask for the `enterprise` scope
get the choice as `act_for` in the ID token, the access token and userinfo."""

from __future__ import annotations

import random
import time

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from kit.identifiers import organisation_code_check_char, uscc_check_char
from tests.web.live import FormBrowser, LiveServer, Receiver, query
from tests.web.test_security import auth_url, pkce, redeem


def new_uscc() -> str:
    org = "".join(random.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    body = "91440300" + org + organisation_code_check_char(org)
    return body + uscc_check_char(body)


def enterprise_client(live: LiveServer, receiver: Receiver, name: str) -> dict:
    reg = live.add_client(
        name,
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "enterprise",
    )
    reg["redirect_uri"] = f"{receiver.base}/callback"
    return reg


def start(browser: FormBrowser, live: LiveServer, reg: dict, **extra: str) -> tuple:
    verifier, challenge = pkce()
    response = browser.get(
        auth_url(
            live,
            reg,
            scope="openid profile enterprise",
            code_challenge=challenge,
            code_challenge_method="S256",
            **extra,
        )
    )
    return browser.follow(response), verifier


def log_in(browser: FormBrowser, live: LiveServer, reg: dict, user: dict) -> tuple:
    """Start an authorization, log in and consent: the page that follows, and the PKCE
    verifier."""
    page, verifier = start(browser, live, reg)
    page = browser.follow(
        browser.post("/login", page, username=user["id_number"], password=user["password"])
    )
    if 'name="decision"' in page.text:
        page = browser.follow(browser.post("/consent", page, decision="allow"))
    return page, verifier


def tokens_for(live: LiveServer, reg: dict, done: httpx.Response, verifier: str) -> dict:
    assert done.status_code in (302, 303), done.text[:300]
    token = redeem(live, reg, query(done.headers["location"])["code"], verifier).json()
    keys = KeySet.import_key_set(httpx.get(f"{live.url}/jwks").json())
    token["id_claims"] = jwt.decode(token["id_token"], keys).claims
    token["at_claims"] = jwt.decode(token["access_token"], keys).claims
    token["userinfo"] = httpx.get(
        f"{live.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    ).json()
    return token


def test_an_agent_chooses_an_enterprise_once_per_session_and_every_system_learns_it(
    live: LiveServer, receiver: Receiver
) -> None:
    agent = live.add_user(name="王经办")
    first, second = new_uscc(), new_uscc()
    live.cli("enterprise", "add", "--uscc", first, "--name", "甲公司",
             "--agent-id-number", agent["id_number"], "--json")  # fmt: skip
    live.cli("enterprise", "add", "--uscc", second, "--name", "乙公司",
             "--agent-id-number", agent["id_number"], "--json")  # fmt: skip
    tax = enterprise_client(live, receiver, "Tax bureau")
    market = enterprise_client(live, receiver, "Market regulation")

    browser = FormBrowser(live)
    page, verifier = log_in(browser, live, tax, agent)
    assert "/act-for" in str(page.url)
    assert "甲公司" in page.text and "乙公司" in page.text and first in page.text
    done = browser.post("/act-for", page, act_for=second)
    token = tokens_for(live, tax, done, verifier)
    expected = {"uscc": second, "name": "乙公司", "role": "agent"}
    assert token["id_claims"]["act_for"] == expected
    assert token["at_claims"]["act_for"] == expected
    assert token["userinfo"]["act_for"] == expected
    assert token["userinfo"]["name"] == "王经办"  # the subject is still the citizen

    # single sign-on: the second system gets the same choice without a question
    page, verifier = start(browser, live, market)
    if 'name="decision"' in page.text:
        page = browser.follow(browser.post("/consent", page, decision="allow"))
    assert "/act-for" not in str(page.url)
    assert tokens_for(live, market, page, verifier)["id_claims"]["act_for"] == expected

    # prompt=select_account asks again; choosing themself removes the claim
    page, verifier = start(browser, live, market, prompt="select_account")
    assert "/act-for" in str(page.url)
    token = tokens_for(live, market, browser.post("/act-for", page, act_for="self"), verifier)
    assert "act_for" not in token["id_claims"] and "act_for" not in token["userinfo"]


def test_a_citizen_who_is_no_agent_is_never_asked(live: LiveServer, receiver: Receiver) -> None:
    citizen = live.add_user()
    reg = enterprise_client(live, receiver, "Social security")
    browser = FormBrowser(live)
    page, verifier = log_in(browser, live, reg, citizen)
    token = tokens_for(live, reg, page, verifier)
    assert "act_for" not in token["id_claims"]


def test_no_acting_for_an_enterprise_one_is_not_agent_of_and_prompt_none_fails(
    live: LiveServer, receiver: Receiver
) -> None:
    agent = live.add_user()
    stranger = new_uscc()
    own = new_uscc()
    live.cli("enterprise", "add", "--uscc", own, "--name", "丙公司",
             "--agent-id-number", agent["id_number"], "--json")  # fmt: skip
    live.cli("enterprise", "add", "--uscc", stranger, "--name", "丁公司", "--json")
    reg = enterprise_client(live, receiver, "Customs")
    browser = FormBrowser(live)
    page, _ = log_in(browser, live, reg, agent)
    assert "/act-for" in str(page.url)
    refused = browser.post("/act-for", page, act_for=stranger)
    assert refused.status_code == 400 and "code=" not in refused.headers.get("location", "")

    # without a choice, a silent request cannot go through (OIDC Core §3.1.2.6)
    _, challenge = pkce()
    silent = browser.get(
        auth_url(
            live,
            reg,
            scope="openid enterprise",
            prompt="none",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
    )
    assert query(silent.headers["location"])["error"] == "account_selection_required"


def test_a_withdrawn_agent_loses_the_tokens_and_is_asked_again(
    live: LiveServer, receiver: Receiver
) -> None:
    agent = live.add_user()
    uscc = new_uscc()
    live.cli("enterprise", "add", "--uscc", uscc, "--name", "戊公司",
             "--agent-id-number", agent["id_number"], "--json")  # fmt: skip
    reg = enterprise_client(live, receiver, "Housing")
    browser = FormBrowser(live)
    page, verifier = log_in(browser, live, reg, agent)
    token = tokens_for(live, reg, browser.post("/act-for", page, act_for=uscc), verifier)
    assert token["id_claims"]["act_for"]["uscc"] == uscc

    out = live.cli("enterprise", "remove-agent", "--uscc", uscc,
                   "--agent-id-number", agent["id_number"], "--json")  # fmt: skip
    assert out["revoked_grants"] == 1
    auth = (reg["client_id"], reg["client_secret"])
    deadline = time.monotonic() + 3  # another process revoked: within the sync interval
    while httpx.post(
        f"{live.url}/introspect", data={"token": token["access_token"]}, auth=auth
    ).json()["active"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the session's choice no longer stands; as the agent has no enterprise left, the
    # login goes on for the citizen themself without the claim
    page, verifier = start(browser, live, reg)
    assert "/act-for" not in str(page.url)
    assert "act_for" not in tokens_for(live, reg, page, verifier)["id_claims"]


def test_consent_given_by_one_citizen_does_not_carry_over_to_another_on_the_same_browser(
    live: LiveServer, receiver: Receiver
) -> None:
    first, second = live.add_user(), live.add_user()
    uscc = new_uscc()
    live.cli("enterprise", "add", "--uscc", uscc, "--name", "己公司",
             "--agent-id-number", first["id_number"], "--json")  # fmt: skip
    reg = enterprise_client(live, receiver, "Kiosk system")
    browser = FormBrowser(live)
    page, _ = start(browser, live, reg, prompt="consent")
    page = browser.follow(
        browser.post("/login", page, username=first["id_number"], password=first["password"])
    )
    page = browser.follow(browser.post("/consent", page, decision="allow"))
    assert "/act-for" in str(page.url)  # the first citizen walks away here
    interaction = browser.form(page)["interaction"]
    login_page = browser.get(f"/login?interaction={interaction}")
    after = browser.follow(
        browser.post(
            "/login", login_page, username=second["id_number"], password=second["password"]
        )
    )
    assert 'name="decision"' in after.text  # asked for their own consent
