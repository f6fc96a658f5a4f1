"""The citizen's journey in real Chromium, through the real pages, against two real
department systems: log in once (password + TOTP), get into the second department with
no password prompt, switch language, see the masked ID number, log out at one department
and be logged out of the other by back-channel."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from idp.totp import code_at
from tests.web.live import LiveServer, free_port
from tests.web.rp_app import RelyingParty

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required (make test installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def department(live: LiveServer, name: str) -> RelyingParty:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    reg = live.add_client(
        name,
        "--redirect-uri",
        f"{base}/callback",
        "--post-logout-redirect-uri",
        f"{base}/",
        "--backchannel-logout-uri",
        f"{base}/backchannel-logout",
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    rp = RelyingParty(name, live.url, reg["client_id"], reg["client_secret"], port)
    rp.start()
    return rp


def totp(secret: str) -> str:
    return code_at(secret, datetime.now(UTC))


def test_log_in_once_everywhere_and_log_out_everywhere(
    live: LiveServer, chromium: Browser, tmp_path: Path
) -> None:
    user = live.add_user(totp=True, name="王小通")
    a = department(live, "民政局婚姻登记")
    b = department(live, "公安局户籍业务")
    context = chromium.new_context(locale="zh-CN")
    page: Page = context.new_page()
    try:
        # department A sends the citizen to log in: password, then the second factor
        page.goto(f"{a.base}/login")
        expect(page.locator("h1")).to_have_text("登录")
        page.screenshot(path=str(tmp_path / "login.png"))
        page.fill("input[name=username]", user["id_number"])
        page.fill("input[name=password]", user["password"])
        page.click("button[type=submit]")
        expect(page.locator("input[name=otp]")).to_be_visible()
        page.fill("input[name=otp]", totp(user["totp_secret"]))
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("授权确认")  # consent on first use
        page.click("button[value=allow]")
        expect(page.locator("#status")).to_have_text("welcome 王小通")

        # department B: no password prompt, only B's own consent on first use
        page.goto(f"{b.base}/login")
        expect(page.locator("h1")).to_have_text("授权确认")
        assert page.locator("input[name=password]").count() == 0
        page.click("button[value=allow]")
        expect(page.locator("#status")).to_have_text("welcome 王小通")

        # the account page, in English, shows the ID number masked
        page.goto(f"{live.url}/account")
        page.click("text=English")
        expect(page.locator("h1")).to_have_text("My account")
        masked = page.locator("[data-testid=masked-id]").inner_text()
        assert masked.endswith(user["id_number"][-2:]) and user["id_number"] not in page.content()
        assert user["id_number"][6:14] not in masked  # never the birth date

        # log out at B: B's session ends, and A is told by back-channel
        page.goto(f"{b.base}/logout")
        expect(page.locator("#status")).to_have_text("signed out")
        deadline = datetime.now(UTC).timestamp() + 15
        while not a.logout_tokens and datetime.now(UTC).timestamp() < deadline:
            page.wait_for_timeout(200)
        assert a.logout_tokens, "A received no logout token"
        page.goto(f"{a.base}/")
        expect(page.locator("#status")).to_have_text("signed out")
        # and the IdP session is gone: A's next login asks for the password again
        page.goto(f"{a.base}/login")
        expect(page.locator("input[name=password]")).to_be_visible()
    finally:
        context.close()
        a.stop()
        b.stop()


def test_pages_work_on_a_phone_with_the_keyboard(live: LiveServer, chromium: Browser) -> None:
    context = chromium.new_context(
        viewport={"width": 375, "height": 740}, locale="zh-CN", is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        page.goto(f"{live.url}/login")
        username = page.locator("input[name=username]")
        expect(username).to_be_visible()
        box = username.bounding_box()
        assert box is not None and box["width"] <= 375
        # every field has a label, and the keyboard reaches the submit button
        for field in ("username", "password"):
            assert page.locator(f"label[for={field}]").count() == 1
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getAttribute('type')")
        assert focused in ("submit", "password", "text")
        # no request leaves the origin
        outside = []
        page.on(
            "request", lambda r: outside.append(r.url) if not r.url.startswith(live.url) else None
        )
        page.reload()
        assert outside == []
    finally:
        context.close()
