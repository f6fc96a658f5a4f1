"""HTTP benchmarks of the OpenID Provider with wrk on loopback, one server worker.

For each endpoint: requests/s, p99 latency (wrk --latency) and the server's CPU time per
request, read from /proc/PID/stat before and after (CPU is the steadier figure on a
shared 2-core machine). Also a full password login against the argon2id hash alone, and
the token endpoint while a flood of logins runs.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from migrations import upgrade
from tests.web.live import FormBrowser, LiveServer, children, start_server

DURATION = int(os.environ.get("BENCH_SECONDS", "8"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and of its descendants (the server's audit
    process), so work moved out of the server is still counted."""
    total = 0
    for proc in [pid, *(c for c in _descendants(pid))]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def _descendants(pid: int) -> list[int]:
    try:
        started = children(pid)
    except FileNotFoundError:
        return []
    return [d for child in started for d in (child, *_descendants(child))]


def wrk(
    url: str, script: str | None, *, connections: int = 8, seconds: int = DURATION
) -> tuple[float, float, int]:
    """(requests/s, p99 ms, requests) from wrk."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script or "")
    if script:
        args[1:1] = ["-s", fh.name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    os.unlink(fh.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None
    value = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses\n{out}")
    return rps, value, total


def post_script(body: str, auth: str | None = None) -> str:
    lines = [
        'wrk.method = "POST"',
        f'wrk.body = "{body}"',
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    ]
    if auth:
        lines.append(f'wrk.headers["Authorization"] = "Basic {auth}"')
    return "\n".join(lines) + "\n"


def run_wrk(
    server: LiveServer, path: str, script: str | None, connections: int = 8
) -> tuple[float, float, float]:
    """(requests/s, p99 ms, server CPU µs per request) after a warm-up. CPU is counted
    until the run's audit events are in the tree (none are pending without auditing)."""
    pid = server.proc.pid
    wrk(f"{server.url}{path}", script, seconds=2, connections=connections)  # warm-up
    wait_drained(server)
    before = cpu_seconds(pid)
    rps, p99, total = wrk(f"{server.url}{path}", script, connections=connections)
    wait_drained(server)
    return rps, p99, (cpu_seconds(pid) - before) / total * 1e6


def measure(server: LiveServer, name: str, path: str, script: str | None) -> tuple[str, str]:
    rps, p99, cpu_us = run_wrk(server, path, script)
    return name, f"{rps:8.0f} req/s   p99 {p99:6.2f} ms   server CPU {cpu_us:6.0f} µs/request"


def machine_auth(server: LiveServer) -> tuple[dict, str]:
    """A client_credentials client, and its Basic credentials for wrk scripts."""
    machine = server.add_client(
        "bench machine", "--grant-type", "client_credentials", "--scope", "licence:read"
    )
    basic = f"{machine['client_id']}:{machine['client_secret']}".encode()
    return machine, base64.b64encode(basic).decode()


def login_cost(server: LiveServer, client: dict, user: dict, rounds: int = 100) -> list[str]:
    """A full login's server CPU against the argon2id hash alone. The hash is timed here
    after each login rather than once beforehand: this machine's speed drifts during a
    run, and the ratio should compare the two at the same moment."""
    from idp.passwords import PasswordHasher

    hasher = PasswordHasher(1)
    stored = hasher.hash(user["password"])
    hasher.verify(stored, user["password"])
    redirect = client["redirect"]
    pid = server.proc.pid
    before, argon = cpu_seconds(pid), 0.0
    for i in range(rounds):
        browser = FormBrowser(server)
        start_url = (
            f"{server.url}/authorize?response_type=code&client_id={client['client_id']}"
            f"&redirect_uri={redirect}&scope=openid&state=s{i}&nonce=n{i}"
        )
        done = browser.login(browser.get(start_url), user)
        assert "code=" in done.headers["location"]
        started = time.process_time()
        hasher.verify(stored, user["password"])
        argon += time.process_time() - started
    login_ms = (cpu_seconds(pid) - before) / rounds * 1000
    argon_ms = argon / rounds * 1000
    return [
        f"argon2id verify alone: {argon_ms:.1f} ms CPU",
        f"full password login (authorize, answered with the login page → POST → code): "
        f"{login_ms:.1f} ms server CPU, {login_ms - argon_ms:.1f} ms over the hash, "
        f"{100 * (login_ms / argon_ms - 1):+.0f}% (target ≤ +10 %)",
    ]


def token_under_login_flood(server: LiveServer, auth: str, user: dict, client: dict) -> str:
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                page = http.get(
                    f"/authorize?response_type=code&client_id={client['client_id']}"
                    f"&redirect_uri={client['redirect']}&scope=openid&state=x",
                    follow_redirects=True,
                )
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                inter = re.search(r'name="interaction" value="([^"]+)"', page.text)
                if csrf and inter:
                    http.post(
                        "/login",
                        data={
                            "csrf_token": csrf.group(1),
                            "interaction": inter.group(1),
                            "username": user["id_number"],
                            "password": "wrong but long password",
                        },
                    )

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1)
    rps, p99, _ = wrk(
        f"{server.url}/token", post_script("grant_type=client_credentials", auth), connections=4
    )
    stop.set()
    for t in threads:
        t.join(timeout=30)
    return f"{rps:8.0f} req/s   p99 {p99:6.2f} ms   (8 threads flooding logins meanwhile)"


def wait_drained(server: LiveServer) -> None:
    """Wait until the sequencer has put every pending audit event into the tree."""
    deadline = time.monotonic() + 120
    with server.runtime.engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM audit_pending")).scalar_one():
            if time.monotonic() > deadline:
                raise RuntimeError("the sequencer did not drain the outbox")
            time.sleep(0.2)
            conn.rollback()


#: wrk connections for the auditing comparison. A token waits for its event's commit, so
#: with few connections the server idles for the round trip to the audit process.
AUDIT_CONNECTIONS = (8, 16, 64)


def audit_cost() -> list[tuple[str, str]]:
    """The token endpoint with and without auditing each issuance (group commit in the
    audit process). CPU covers the server and its audit process, counted until the run's
    events are sequenced into the tree; the loss is given both by requests/s and by CPU."""
    out = []
    figures: dict[tuple[bool, int], tuple[float, float]] = {}
    for audited in (True, False):
        data = Path(tempfile.mkdtemp(prefix="tongban-bench-"))
        url = f"sqlite:///{data / 'bench.db'}"
        upgrade(url)
        server = start_server(
            url, data, extra_env={"TONGBAN_AUDIT_MACHINE_TOKENS": str(audited).lower()}
        )
        try:
            script = post_script("grant_type=client_credentials", machine_auth(server)[1])
            for connections in AUDIT_CONNECTIONS:
                rps, p99, cpu = run_wrk(server, "/token", script, connections)
                figures[(audited, connections)] = (rps, cpu)
                label = f"token, audit {'on ' if audited else 'off'}, {connections} conn"
                out.append(
                    (
                        label,
                        f"{rps:8.0f} req/s   p99 {p99:6.2f} ms   server CPU {cpu:6.0f} µs/request",
                    )
                )
        finally:
            server.stop()
            server.runtime.engine.dispose()
            shutil.rmtree(data, ignore_errors=True)
    for connections in AUDIT_CONNECTIONS:
        (on_rps, on_cpu), (off_rps, off_cpu) = (
            figures[(True, connections)],
            figures[(False, connections)],
        )
        out.append(
            (
                f"auditing cost, {connections} conn",
                f"{100 * (1 - on_rps / off_rps):5.1f}% fewer req/s, "
                f"{100 * (on_cpu / off_cpu - 1):5.1f}% more CPU per token incl. sequencing",
            )
        )
    # Throughput is the most a server sustains: the best rate over the connection counts.
    # With few connections an audited token also waits for its commit, which measures
    # latency as much as capacity, so each count's rate is given above as well.
    on_best, off_best = (
        max(figures[(audited, c)][0] for c in AUDIT_CONNECTIONS) for audited in (True, False)
    )
    out.append(
        (
            "auditing cost, throughput",
            f"{100 * (1 - on_best / off_best):5.1f}% fewer req/s at best "
            f"({on_best:.0f} audited, {off_best:.0f} not) (target ≤ 10 %)",
        )
    )
    return out


def run() -> list[tuple[str, str]]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is required (make bench installs it)")
    data = Path(tempfile.mkdtemp(prefix="tongban-bench-"))
    url = f"sqlite:///{data / 'bench.db'}"
    upgrade(url)
    # A high failure budget: the login flood below must reach the password check.
    server = start_server(
        url,
        data,
        extra_env={
            "TONGBAN_LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE": "1000000",
            "TONGBAN_INTERACTIONS_PER_ADDRESS_PER_MINUTE": "1000000",
            "TONGBAN_ACCOUNT_LOCKOUT_THRESHOLD": "100",
        },
    )
    results: list[tuple[str, str]] = []
    try:
        machine, auth = machine_auth(server)
        redirect = "http://127.0.0.1:9/cb"
        web = server.add_client(
            "bench web",
            "--redirect-uri",
            redirect,
            "--scope",
            "openid",
            "--auth-method",
            "client_secret_basic",
        )
        web["redirect"] = redirect
        user = server.add_user()
        # consent once, so the login rounds measure login, not the consent page
        browser = FormBrowser(server)
        browser.login(
            browser.get(
                f"{server.url}/authorize?response_type=code&client_id={web['client_id']}"
                f"&redirect_uri={redirect}&scope=openid&state=s&nonce=n"
            ),
            user,
        )
        token = httpx.post(
            f"{server.url}/token",
            data={"grant_type": "client_credentials"},
            auth=(machine["client_id"], machine["client_secret"]),
        ).json()["access_token"]
        results.append(measure(server, "discovery", "/.well-known/openid-configuration", None))
        results.append(measure(server, "JWKS", "/jwks", None))
        results.append(
            measure(
                server,
                "token (client_credentials, JWT)",
                "/token",
                post_script("grant_type=client_credentials", auth),
            )
        )
        results.append(
            measure(server, "introspection", "/introspect", post_script(f"token={token}", auth))
        )
        for line in login_cost(server, web, user):
            results.append(("login", line))
        results.append(
            ("token during login flood", token_under_login_flood(server, auth, user, web))
        )
    finally:
        server.stop()
        server.runtime.engine.dispose()
        shutil.rmtree(data, ignore_errors=True)
    # on servers of their own, with the first one gone
    results.extend(audit_cost())
    return results
