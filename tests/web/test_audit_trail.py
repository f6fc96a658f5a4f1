"""The running service leaves a verifiable trace (全程留痕): actions become audit events,
sequenced into the Merkle tree by the server itself, listed by the admin API, shown to
the citizen, and `tongban audit verify` proves the log intact."""

from __future__ import annotations

import json
import subprocess
import time

import httpx

from tests.web.live import BIN, LiveServer, Receiver
from tests.web.test_security import logged_in


def admin_headers(live: LiveServer) -> dict[str, str]:
    admin = live.add_client(
        "Auditor console", "--grant-type", "client_credentials", "--scope", "admin"
    )
    token = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials"},
        auth=(admin["client_id"], admin["client_secret"]),
    ).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_actions_are_audited_sequenced_shown_and_verifiable(
    live: LiveServer, receiver: Receiver
) -> None:
    rp = live.add_client(
        "Audited RP",
        "--redirect-uri",
        f"{receiver.base}/callback",
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    rp["redirect_uri"] = f"{receiver.base}/callback"
    browser, user = logged_in(live, rp)
    headers = admin_headers(live)

    # the server sequences pending events into the tree by itself
    deadline = time.time() + 20
    while True:
        page = httpx.get(
            f"{live.url}/admin/v1/audit/events",
            params={"client_id": rp["client_id"], "limit": 50},
            headers=headers,
        ).json()
        names = {e["event"] for e in page["events"]}
        if {"consent.granted", "authorization_code.issued"} <= names or time.time() > deadline:
            break
        time.sleep(0.5)
    assert {"client.created", "consent.granted", "authorization_code.issued"} <= names
    assert all(e["position"] is not None for e in page["events"])
    text = json.dumps(page, ensure_ascii=False)
    assert user["id_number"] not in text  # personal identifiers never in clear

    failed = httpx.get(
        f"{live.url}/admin/v1/audit/events",
        params={"prefix": "login.", "result": "failure"},
        headers=headers,
    )
    assert failed.status_code == 200
    bad = httpx.get(f"{live.url}/admin/v1/audit/events", params={"limit": 100000}, headers=headers)
    assert bad.status_code == 400 and bad.headers["content-type"].startswith(
        "application/problem+json"
    )

    # the citizen sees their own login and consent history
    account = browser.get("/account")
    assert "登录成功" in account.text and "授权政务系统" in account.text

    # an operator proves the log intact
    out = subprocess.run(
        [str(BIN / "tongban"), "audit", "verify", "--json"],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["outcome"].upper() == "PASSED"
