"""Self-registration (实名注册) and password reset through the plain HTML pages, against a
real server on both databases: the registry extract is imported with the CLI, the SMS
code is read from `tongban sms outbox`, and the new account logs in through an
authorization request. Answers must never reveal whether an ID number is known or
matches the registry (ASVS 6.3.8)."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.models import Account, PhoneCode, SsoSession
from kit.identifiers import id_number_check_char
from tests.web.live import BIN, FormBrowser, LiveServer, new_id_number, new_phone, query

CODE = re.compile(r"验证码\s*(\d{6})")
FLOW = re.compile(r'name="flow" value="([^"]*)"')
SENT = "如信息无误，验证码已发送到您的手机。"
BAD_CODE = "验证码错误或已过期。"
REDIRECT = "http://127.0.0.1:9/registration-cb"
NAMES = ["李小龙", "王芳", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]


# -- helpers ---------------------------------------------------------------------------------


def sms_outbox(live: LiveServer, *waiting_for: str) -> list[dict[str, str]]:
    """Every message in the development outbox (`tongban sms outbox`, one JSON per line).

    Codes and notices go out after the answer (`idp.registration.PhoneFlows`), as a real
    SMS arrives after the page: first wait for a message to each phone of `waiting_for`,
    then a moment more for the steps of the requests made before."""
    deadline = time.monotonic() + 15
    for phone in waiting_for:
        while not sms_rows(live, phone):
            assert time.monotonic() < deadline, f"no message to {phone}"
            time.sleep(0.05)
    time.sleep(0.3)
    out = subprocess.run(
        [str(BIN / "tongban"), "sms", "outbox", "--last", "200"],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def texts_to(outbox: list[dict[str, str]], phone_e164: str) -> list[str]:
    return [m["text"] for m in outbox if m["to"] == phone_e164]


def code_in(text: str) -> str:
    match = CODE.search(text)
    assert match, text
    return match.group(1)


def sms_rows(live: LiveServer, phone_e164: str) -> int:
    """Messages sent to exactly this phone (masked numbers of random phones can collide,
    so the encrypted recipient is read back)."""
    from idp.registration import DevelopmentSms

    with live.runtime.factory() as s:
        outbox = DevelopmentSms(live.runtime.services.pii, live.runtime.clock).outbox(
            s, last=100_000
        )
    return sum(1 for message in outbox if message["to"] == phone_e164)


def account_for(live: LiveServer, id_number: str) -> Account | None:
    with live.runtime.factory() as s:
        return live.runtime.context(s).accounts.find_by_id_number(id_number)


def flow_of(page: httpx.Response) -> str:
    match = FLOW.search(page.text)
    assert match, page.text[:800]
    return match.group(1)


def without_flow(page: httpx.Response) -> str:
    return FLOW.sub('name="flow" value=""', page.text)


def start_registration(
    browser: FormBrowser, *, id_number: str, name: str, phone: str
) -> httpx.Response:
    form = browser.get("/register")
    assert form.status_code == 200 and 'name="id_number"' in form.text
    return browser.post("/register", form, id_number=id_number, name=name, phone=phone)


def verify(browser: FormBrowser, path: str, page: httpx.Response, **data: str) -> httpx.Response:
    return browser.post(path, page, **data)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(live: LiveServer, rp: dict, challenge: str, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": rp["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid profile phone",
        "state": secrets.token_hex(6),
        "nonce": secrets.token_hex(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{live.url}/authorize?{urlencode(params)}"


def login_page(browser: FormBrowser) -> httpx.Response:
    """The login page reached directly (it leads to the account page)."""
    page = browser.get("/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    return page


def password_login(browser: FormBrowser, username: str, password: str) -> httpx.Response:
    return browser.post("/login", login_page(browser), username=username, password=password)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """A population-registry extract imported with `tongban registry import`."""
    rows = [{"id_number": new_id_number(), "name": name} for name in NAMES]
    path: Path = tmp_path_factory.mktemp("registry") / "extract.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id_number", "name"])
        writer.writeheader()
        writer.writerows(rows)
    assert live.cli("registry", "import", str(path)) == {"imported": len(rows)}
    return rows


@pytest.fixture(scope="module")
def rp(live: LiveServer) -> dict:
    return live.add_client(
        "Registration RP",
        "--redirect-uri",
        REDIRECT,
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "phone",
    )


# -- tests -----------------------------------------------------------------------------------


def test_register_with_phone_code_then_log_in_through_an_authorization_request(
    live: LiveServer, people: list[dict], rp: dict
) -> None:
    person, phone = people[0], new_phone()
    password = "a quiet meadow under the moon"
    browser = FormBrowser(live)
    # the phone as people type it (no +86): stored and sent in E.164
    started = start_registration(
        browser, id_number=person["id_number"].lower(), name=person["name"], phone=phone[3:]
    )
    assert started.status_code == 200, started.text[:500]
    assert SENT in started.text and 'action="/register/verify"' in started.text
    assert person["id_number"] not in started.text and person["id_number"] not in str(started.url)
    flow = flow_of(started)

    texts = texts_to(sms_outbox(live, phone), phone)
    assert len(texts) == 1, texts
    code = code_in(texts[0])
    assert account_for(live, person["id_number"]) is None  # nothing before the phone is proved

    done = verify(browser, "/register/verify", started, flow=flow, code=code, password=password)
    assert done.status_code == 200, done.text[:500]
    assert "注册成功，请登录。" in done.text
    account = account_for(live, person["id_number"])
    assert account is not None and account.verified and account.name == person["name"]

    # the code worked once: the same flow and code again are refused, nothing changes
    again = verify(browser, "/register/verify", started, flow=flow, code=code, password="x" * 20)
    assert again.status_code == 400 and BAD_CODE in again.text

    # log in with the new account at a department system
    verifier, challenge = pkce()
    response = browser.login(
        browser.get(authorize_url(live, rp, challenge)),
        {"id_number": person["id_number"], "password": password},
    )
    assert response.status_code == 303, response.text[:500]
    params = query(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT) and "code" in params
    token = httpx.post(
        f"{live.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(rp["client_id"], rp["client_secret"]),
    )
    assert token.status_code == 200, token.text
    keys = KeySet.import_key_set(httpx.get(f"{live.url}/jwks").json())
    claims = jwt.decode(token.json()["id_token"], keys).claims
    assert claims["aud"] == rp["client_id"] and claims["acr"] == "urn:tongban:acr:password"
    info = httpx.get(
        f"{live.url}/userinfo",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    ).json()
    assert info["name"] == person["name"]
    assert info["phone_number"] == phone and info["phone_number_verified"] is True


def test_known_number_and_registry_mismatch_look_like_a_successful_start(
    live: LiveServer, people: list[dict]
) -> None:
    owner_phone = new_phone()
    with live.runtime.factory.begin() as s:  # an account that already exists
        live.runtime.context(s).accounts.create(
            id_number=people[1]["id_number"],
            name=people[1]["name"],
            password="the existing account's passphrase",
            phone=owner_phone,
            verified=True,
        )
    cases = {
        "new": (people[2]["id_number"], people[2]["name"]),
        "registered": (people[1]["id_number"], people[1]["name"]),
        "wrong_name": (people[3]["id_number"], people[3]["name"] + "明"),
        "not_in_registry": (new_id_number(), "无此人"),
    }
    phones = {case: new_phone() for case in cases}
    browser = FormBrowser(live)
    pages = {
        case: start_registration(browser, id_number=number, name=name, phone=phones[case])
        for case, (number, name) in cases.items()
    }
    flows = {case: flow_of(page) for case, page in pages.items()}
    reference = pages["new"]
    assert reference.status_code == 200 and SENT in reference.text
    for case, page in pages.items():
        assert page.status_code == reference.status_code, case
        assert without_flow(page) == without_flow(reference), case
        assert len(flows[case]) == len(flows["new"]), case  # same shape of flow id
    assert len(set(flows.values())) == len(flows)

    # the typed-in phone learns nothing either: only a due code is sent to it, and the
    # owner of an already registered identity is told on their own phone
    outbox = sms_outbox(live, phones["new"], owner_phone)
    new_texts = texts_to(outbox, phones["new"])
    assert len(new_texts) == 1 and CODE.search(new_texts[0])
    for case in ("registered", "wrong_name", "not_in_registry"):
        assert texts_to(outbox, phones[case]) == [], case
    notice = texts_to(outbox, owner_phone)
    assert len(notice) == 1 and "尝试用您的身份号码注册" in notice[0]
    assert not re.search(r"\d{6}", notice[0])

    # a decoy flow cannot be finished with any code, and nothing was created
    new_code = code_in(new_texts[0])
    decoy = verify(
        browser,
        "/register/verify",
        pages["wrong_name"],
        flow=flows["wrong_name"],
        code=new_code,
        password="some long passphrase here",
    )
    assert decoy.status_code == 400 and BAD_CODE in decoy.text
    assert account_for(live, people[3]["id_number"]) is None
    assert account_for(live, cases["not_in_registry"][0]) is None


def five_wrong_then_right(
    browser: FormBrowser, path: str, page: httpx.Response, code: str, password: str
) -> httpx.Response:
    """Five wrong codes (each refused clearly), then the right one: its answer."""
    flow = flow_of(page)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for attempt in range(5):
        refused = verify(browser, path, page, flow=flow, code=wrong, password=password)
        assert refused.status_code == 400, attempt
        assert BAD_CODE in refused.text and 'role="alert"' in refused.text
        assert flow_of(refused) == flow  # the page lets the citizen try again
    return verify(browser, path, page, flow=flow, code=code, password=password)


def attempts(live: LiveServer, flow: str) -> int:
    with live.runtime.factory() as s:
        row = s.get(PhoneCode, flow)
        assert row is not None
        return row.attempts


def test_five_wrong_codes_end_the_registration_and_reset_flows(
    live: LiveServer, people: list[dict]
) -> None:
    person, phone = people[4], new_phone()
    browser = FormBrowser(live)
    registering = start_registration(
        browser, id_number=person["id_number"], name=person["name"], phone=phone
    )
    number, reset_phone = new_id_number(), new_phone()
    with live.runtime.factory.begin() as s:
        account_id = (
            live.runtime.context(s)
            .accounts.create(
                id_number=number,
                name="猜码测试",
                phone=reset_phone,
                password="the victim's passphrase",
                verified=True,
            )
            .account.id
        )
    resetting = browser.post("/reset", browser.get("/reset"), username=number)
    outbox = sms_outbox(live, phone, reset_phone)
    register_code = code_in(texts_to(outbox, phone)[0])
    reset_code = code_in(texts_to(outbox, reset_phone)[0])

    late = five_wrong_then_right(
        browser, "/register/verify", registering, register_code, "a long enough passphrase"
    )
    assert attempts(live, flow_of(registering)) == 5
    assert late.status_code == 400 and BAD_CODE in late.text
    assert account_for(live, person["id_number"]) is None

    with live.runtime.factory() as s:
        before = s.get(Account, account_id).password_hash  # type: ignore[union-attr]
    late = five_wrong_then_right(
        browser, "/reset/verify", resetting, reset_code, "an attacker's new passphrase"
    )
    assert late.status_code == 400 and BAD_CODE in late.text
    with live.runtime.factory() as s:
        assert s.get(Account, account_id).password_hash == before  # type: ignore[union-attr]


def test_a_wrong_code_is_refused_and_the_right_one_still_works(
    live: LiveServer, people: list[dict]
) -> None:
    """Below the limit a typo is not fatal (and is said clearly)."""
    person, phone = people[5], new_phone()
    browser = FormBrowser(live)
    started = start_registration(
        browser, id_number=person["id_number"], name=person["name"], phone=phone
    )
    flow = flow_of(started)
    code = code_in(texts_to(sms_outbox(live, phone), phone)[0])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = verify(
        browser, "/register/verify", started, flow=flow, code=wrong, password="a long passphrase!"
    )
    assert refused.status_code == 400 and BAD_CODE in refused.text
    assert account_for(live, person["id_number"]) is None
    # a weak password is refused without spending the code
    weak = verify(browser, "/register/verify", started, flow=flow, code=code, password="short")
    assert weak.status_code == 400 and 'role="alert"' in weak.text
    assert account_for(live, person["id_number"]) is None
    ok = verify(
        browser, "/register/verify", started, flow=flow, code=code, password="a long passphrase!"
    )
    assert ok.status_code == 200 and "注册成功" in ok.text
    assert account_for(live, person["id_number"]) is not None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ("check", "校验码不符，请核对号码。"),
        ("date", "第7至14位出生日期无效。"),
        ("length", "公民身份号码应为18位。"),
    ],
)
def test_format_errors_are_shown_and_send_nothing(
    live: LiveServer, people: list[dict], mutate: str, message: str
) -> None:
    number = people[6]["id_number"]
    if mutate == "check":
        number = number[:17] + ("0" if number[17] != "0" else "1")
    elif mutate == "date":
        body = number[:10] + "1332" + number[14:17]  # month 13
        number = body + id_number_check_char(body)
    else:
        number = number[:17]
    phone = new_phone()
    browser = FormBrowser(live)
    page = start_registration(browser, id_number=number, name=people[6]["name"], phone=phone)
    assert page.status_code == 400
    assert message in page.text and 'role="alert"' in page.text
    assert 'action="/register"' in page.text and 'name="flow"' not in page.text
    assert sms_rows(live, phone) == 0


def test_bad_phone_and_missing_csrf_are_refused(live: LiveServer, people: list[dict]) -> None:
    person = people[7]
    browser = FormBrowser(live)
    bad_phone = start_registration(
        browser, id_number=person["id_number"], name=person["name"], phone="12345"
    )
    assert bad_phone.status_code == 400 and 'role="alert"' in bad_phone.text
    phone = new_phone()
    browser.get("/register")
    no_csrf = browser.http.post(
        "/register",
        data={"id_number": person["id_number"], "name": person["name"], "phone": phone},
    )
    assert no_csrf.status_code == 303 and no_csrf.headers["location"] == "/register"
    assert sms_rows(live, phone) == 0


def test_password_reset_by_phone_code_logs_out_other_sessions(live: LiveServer) -> None:
    number, phone = new_id_number(), new_phone()
    old, new = "the old passphrase for reset", "a brand new passphrase"
    with live.runtime.factory.begin() as s:
        account_id = (
            live.runtime.context(s)
            .accounts.create(
                id_number=number, name="重置测试", phone=phone, password=old, verified=True
            )
            .account.id
        )
    elsewhere = FormBrowser(live)  # logged in on another device
    signed_in = elsewhere.follow(password_login(elsewhere, number, old))
    assert signed_in.status_code == 200 and "/account" in str(signed_in.url)

    browser = FormBrowser(live)
    form = browser.get("/reset")
    assert form.status_code == 200 and 'name="username"' in form.text
    known = browser.post("/reset", form, username=number)
    by_phone = browser.post("/reset", form, username=phone[3:])
    unknown = browser.post("/reset", form, username=new_id_number())
    garbage = browser.post("/reset", form, username="not a user at all")
    for page in (known, by_phone, unknown, garbage):
        assert page.status_code == 200 and SENT in page.text
        assert without_flow(page) == without_flow(known)
    flow = flow_of(known)

    texts = texts_to(sms_outbox(live, phone), phone)
    assert len(texts) == 2, texts  # one for the ID number, one for the phone; none for others
    code = code_in(texts[0])

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = verify(browser, "/reset/verify", known, flow=flow, code=wrong, password=new)
    assert refused.status_code == 400 and BAD_CODE in refused.text

    done = verify(browser, "/reset/verify", known, flow=flow, code=code, password=new)
    assert done.status_code == 200 and "密码已重置，请登录。" in done.text
    # each code works once: replaying it cannot set another password
    replay = verify(browser, "/reset/verify", known, flow=flow, code=code, password="x" * 24)
    assert replay.status_code == 400 and BAD_CODE in replay.text

    # the other device is logged out
    assert elsewhere.get("/account").status_code == 303
    with live.runtime.factory() as s:
        live_sessions = s.scalars(
            select(SsoSession).where(
                SsoSession.account_id == account_id, SsoSession.ended_at.is_(None)
            )
        ).all()
    assert live_sessions == []

    # the old password no longer works, the new one does
    fresh = FormBrowser(live)
    assert password_login(fresh, number, old).status_code == 401
    ok = password_login(fresh, number, new)
    assert ok.status_code == 303
    landed = fresh.follow(ok)
    assert landed.status_code == 200 and "/account" in str(landed.url)
