"""Revocation reaches every server process: a token revoked by one process stops passing
introspection in another within `TONGBAN_REVOCATION_SYNC_SECONDS` (1 s by default),
although that process answers introspection from memory."""

from __future__ import annotations

import base64
import time

import httpx
from starlette.datastructures import Headers

from tests.web.live import LiveServer
from web.protocol_endpoints import handle


def introspect(live: LiveServer, token: str, auth: tuple[str, str]) -> dict:
    response = httpx.post(f"{live.url}/introspect", data={"token": token}, auth=auth)
    assert response.status_code == 200
    return dict(response.json())


def test_a_revocation_made_by_another_process_takes_effect_within_the_sync_interval(
    live: LiveServer,
) -> None:
    machine = live.add_client(
        "Revoked elsewhere", "--grant-type", "client_credentials", "--scope", "licence:read"
    )
    auth = (machine["client_id"], machine["client_secret"])
    token = httpx.post(
        f"{live.url}/token", data={"grant_type": "client_credentials"}, auth=auth
    ).json()["access_token"]
    for _ in range(3):  # verified and remembered by the server process
        assert introspect(live, token, auth)["active"] is True

    # This test process is "another replica": it revokes through the same protocol code.
    basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode())
    headers = Headers(
        raw=[
            (b"authorization", b"Basic " + basic),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ]
    )
    revoked = handle(live.runtime, "/revoke", headers, [("token", token)], "127.0.0.1")
    assert revoked is not None and revoked.status == 200
    start = time.monotonic()
    while introspect(live, token, auth)["active"]:
        assert time.monotonic() - start < 3.0, "revocation not seen within the sync interval"
        time.sleep(0.05)
    assert introspect(live, token, auth) == {"active": False}


def test_own_revocation_takes_effect_at_once(live: LiveServer) -> None:
    machine = live.add_client(
        "Revoked here", "--grant-type", "client_credentials", "--scope", "licence:read"
    )
    auth = (machine["client_id"], machine["client_secret"])
    token = httpx.post(
        f"{live.url}/token", data={"grant_type": "client_credentials"}, auth=auth
    ).json()["access_token"]
    assert introspect(live, token, auth)["active"] is True
    assert httpx.post(f"{live.url}/revoke", data={"token": token}, auth=auth).status_code == 200
    assert introspect(live, token, auth) == {"active": False}
