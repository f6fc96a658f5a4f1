"""The `tongban` command as operators and black-box tests use it (issue 2, "The interface
that operators and black-box tests rely on"): exact option forms, one JSON object on
stdout, clear failures with a non-zero exit, and `serve` that stops with its children."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, select

from idp.models import Client
from idp.totp import code_at
from keys.models import SigningKey
from migrations import upgrade
from tests.web.live import BIN, LiveServer, children, free_port, new_id_number
from web.runtime import build_runtime
from web.settings import Settings

LOOPBACK = "http://127.0.0.1:{port}"


def tongban(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "tongban"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_json(out: subprocess.CompletedProcess) -> dict | list:
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, out.stdout  # exactly one JSON document
    return json.loads(lines[0])


def clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGBAN_")}
    env.update(
        TONGBAN_DATABASE_URL=f"sqlite:///{tmp / 'x.db'}",
        TONGBAN_DATA_DIR=str(tmp),
    )
    return env


# -- storage set-up --------------------------------------------------------------------------


def test_db_upgrade_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert not db.exists()
    out = tongban(clean_env(tmp_path), "db", "upgrade")
    assert out.returncode == 0, out.stderr
    assert db.is_file()
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"account", "client", "sso_session"} <= tables
    assert version  # stamped with the migration heads


# -- clients ---------------------------------------------------------------------------------


def test_client_add_list_and_remove(live: LiveServer) -> None:
    port = free_port()
    base = LOOPBACK.format(port=port)
    redirects = [f"{base}/cb", f"{base}/cb2?tenant=7"]  # loopback, with a query string
    post_logout = [f"{base}/", f"{base}/bye?x=1"]
    out = tongban(
        live.env,
        "client",
        "add",
        "--name",
        "CLI Dept",
        "--redirect-uri",
        redirects[0],
        "--redirect-uri",
        redirects[1],
        "--post-logout-redirect-uri",
        post_logout[0],
        "--post-logout-redirect-uri",
        post_logout[1],
        "--backchannel-logout-uri",
        f"{base}/backchannel?dept=1",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "licence:read",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--grant-type",
        "client_credentials",
        "--json",
    )
    reg = one_json(out)
    assert isinstance(reg, dict)
    assert reg["client_id"] and reg["client_secret"]
    assert reg["scopes"] == ["openid", "profile", "licence:read"]
    assert set(reg["grant_types"]) == {"authorization_code", "refresh_token", "client_credentials"}
    with live.runtime.factory() as s:
        row = s.get(Client, reg["client_id"])
        assert row is not None
        assert row.redirect_uris == redirects
        assert row.post_logout_redirect_uris == post_logout
        assert row.backchannel_logout_uri == f"{base}/backchannel?dept=1"
        assert reg["client_secret"] not in (row.secret_hash or "")  # only a keyed hash
    token = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials", "scope": "licence:read"},
        auth=(reg["client_id"], reg["client_secret"]),
    )
    assert token.status_code == 200, token.text
    wrong = httpx.post(
        f"{live.url}/token",
        data={"grant_type": "client_credentials"},
        auth=(reg["client_id"], reg["client_secret"] + "x"),
    )
    assert wrong.status_code == 401

    listed = one_json(tongban(live.env, "client", "list", "--json"))
    assert isinstance(listed, list)
    mine = [c for c in listed if c["client_id"] == reg["client_id"]]
    assert len(mine) == 1 and mine[0]["name"] == "CLI Dept"
    assert mine[0]["redirect_uris"] == redirects
    assert all("client_secret" not in c and "secret_hash" not in c for c in listed)

    removed = tongban(live.env, "client", "remove", reg["client_id"])
    assert removed.returncode == 0, removed.stderr
    with live.runtime.factory() as s:
        assert s.get(Client, reg["client_id"]) is None
    again = tongban(live.env, "client", "remove", reg["client_id"])
    assert again.returncode != 0 and reg["client_id"] in again.stderr


def test_public_client_gets_no_secret(live: LiveServer) -> None:
    reg = one_json(
        tongban(
            live.env,
            "client",
            "add",
            "--name",
            "CLI Native App",
            "--redirect-uri",
            "http://127.0.0.1:8765/cb",
            "--auth-method",
            "none",
            "--json",
        )
    )
    assert isinstance(reg, dict)
    assert reg["client_id"] and "client_secret" not in reg
    assert reg["auth_method"] == "none"


REFUSED = {
    "authorization_code without a redirect URI": (
        ["client", "add", "--grant-type", "authorization_code"],
        "redirect URI",
    ),
    "the default grant without a redirect URI": (["client", "add"], "redirect URI"),
    "a non-loopback http redirect URI": (
        ["client", "add", "--redirect-uri", "http://dept.example.gov.cn/cb"],
        "https",
    ),
    "a non-loopback http post-logout URI": (
        [
            "client",
            "add",
            "--redirect-uri",
            "https://dept.example.gov.cn/cb",
            "--post-logout-redirect-uri",
            "http://dept.example.gov.cn/",
        ],
        "https",
    ),
}


def test_bad_registrations_fail_clearly_and_write_nothing(live: LiveServer) -> None:
    """Run side by side (each command is a fresh interpreter)."""
    names = {case: f"Refused {i} {new_id_number()[-6:]}" for i, case in enumerate(REFUSED)}
    weak_number = new_id_number()
    with ThreadPoolExecutor(max_workers=len(REFUSED) + 1) as pool:
        futures = {
            case: pool.submit(tongban, live.env, *args, "--name", names[case], "--json")
            for case, (args, _) in REFUSED.items()
        }
        weak = pool.submit(
            tongban,
            live.env,
            "user",
            "add",
            "--id-number",
            weak_number,
            "--name",
            "弱密码",
            "--password-stdin",
            "--json",
            stdin="password\n",
        )
    for case, future in futures.items():
        out = future.result()
        assert out.returncode != 0, case
        assert REFUSED[case][1] in out.stderr, (case, out.stderr)
        assert "Traceback" not in out.stderr and out.stdout.strip() == "", case
    out = weak.result()
    assert out.returncode != 0 and out.stderr.strip(), "a weak password was accepted"
    assert "Traceback" not in out.stderr and out.stdout.strip() == ""
    with live.runtime.factory() as s:
        assert s.scalars(select(Client).where(Client.name.in_(names.values()))).all() == []
        assert live.runtime.context(s).accounts.find_by_id_number(weak_number) is None


# -- users -----------------------------------------------------------------------------------


def test_user_add_with_totp_prints_a_working_base32_secret(live: LiveServer) -> None:
    number = new_id_number()
    out = one_json(
        tongban(
            live.env,
            "user",
            "add",
            "--id-number",
            number,
            "--name",
            "命令行市民",
            "--phone",
            "13912345678",
            "--totp",
            "--password-stdin",
            "--json",
            stdin="a passphrase from standard input\n",
        )
    )
    assert isinstance(out, dict)
    secret = out["totp_secret"]
    assert len(base64.b32decode(secret)) >= 20  # base32, at least 160 bits
    assert number not in json.dumps(out)
    with live.runtime.factory.begin() as s:
        accounts = live.runtime.context(s).accounts
        account = accounts.find_by_id_number(number)
        assert account is not None and account.verified and account.name == "命令行市民"
        assert accounts.has_second_factor(account)
        assert accounts.verify_second_factor(account, code_at(secret, datetime.now(UTC))) == "otp"


# -- keys ------------------------------------------------------------------------------------


def test_keys_list_shows_the_published_keys_without_private_parts(live: LiveServer) -> None:
    rows = one_json(tongban(live.env, "keys", "list", "--json"))
    assert isinstance(rows, list) and rows
    kids = [r["kid"] for r in rows]
    assert len(kids) == len(set(kids))
    assert {"ES256", "RS256"} <= {r["alg"] for r in rows}
    assert "none" not in {r["alg"] for r in rows}
    published = {k["kid"] for k in httpx.get(f"{live.url}/jwks").json()["keys"]}
    assert published <= set(kids)
    text = json.dumps(rows)
    assert "PRIVATE" not in text and '"d"' not in text and "wrapped" not in text


# -- serve -----------------------------------------------------------------------------------


def _children(pid: int) -> dict[int, str]:
    """Processes `pid` started, with their start time (guards against pid reuse)."""
    found = {}
    for child in children(pid):
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            continue
        found[child] = stat.rsplit(")", 1)[1].split()[19]  # state, ppid, …, starttime
    return found


def _alive(pid: int, started: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"


def test_serve_with_two_workers_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["TONGBAN_ISSUER"] = url
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            str(BIN / "tongban"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        meta = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"{url}/.well-known/openid-configuration", timeout=2)
                if response.status_code == 200:
                    meta = response.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert meta is not None, (tmp_path / "serve.log").read_text()[-2000:]
        assert meta["issuer"] == url
        assert httpx.get(f"{url}/jwks", timeout=5).json()["keys"]
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers  # the two workers
        # and the audit process of each worker that has started
        children = {**workers, **{p: s for w in workers for p, s in _children(w).items()}}
        assert len(children) > len(workers), children

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]
        assert time.monotonic() - started < 15
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in children.items()):
            time.sleep(0.05)
        assert not [p for p, s in children.items() if _alive(p, s)]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/.well-known/openid-configuration", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_workers_starting_together_create_one_signing_key_per_algorithm(tmp_path: Path) -> None:
    """`serve --workers 2` on a new SQLite database: both workers run the first-start key
    set-up at once. Here worker B reads the key table, then worker A completes its set-up
    before B goes on (the interleaving seen under load, after which one worker publishes a
    JWKS without the keys the other signs with)."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    settings = Settings(database_url=url, issuer="http://127.0.0.1:9", data_dir=tmp_path)
    worker_a, worker_b = build_runtime(settings), build_runtime(settings)
    b_has_read, a_is_done = threading.Event(), threading.Event()
    first_read = re.compile(r"\s*SELECT\b.*\bsigning_key\b", re.S | re.I)

    @event.listens_for(worker_b.engine, "after_cursor_execute")
    def pause_after_first_read(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if not b_has_read.is_set() and first_read.match(statement):
            b_has_read.set()
            a_is_done.wait(2)  # bounded: a fix that locks before reading must not deadlock

    def run_a() -> None:
        try:
            worker_a.ensure_keys()
        finally:
            a_is_done.set()

    errors: list[BaseException] = []

    def run_b() -> None:
        try:
            worker_b.ensure_keys()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread_b = threading.Thread(target=run_b)
    thread_b.start()
    try:
        assert b_has_read.wait(15)
        thread_a = threading.Thread(target=run_a)
        thread_a.start()
        thread_a.join(30)
        thread_b.join(30)
        assert not errors, errors
        with worker_a.factory() as s:
            active = s.scalars(select(SigningKey.alg).where(SigningKey.state == "active")).all()
        assert sorted(active) == ["ES256", "RS256"]
    finally:
        a_is_done.set()
        thread_b.join(30)
        worker_a.engine.dispose()
        worker_b.engine.dispose()
