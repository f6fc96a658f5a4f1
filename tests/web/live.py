"""A real Tongban server in a subprocess (`tongban serve`), a department system's
back-channel receiver, and a cookie-keeping HTTP "browser" that fills the plain HTML forms."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from kit.identifiers import id_number_check_char
from web.runtime import Runtime, build_runtime
from web.settings import Settings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_id_number(rng: random.Random | None = None) -> str:
    """A synthetic, valid ID number (born in 2090-2099, so no real person)."""
    r = rng or random
    body = (
        f"{r.choice(['110105', '310104', '440305', '320102'])}"
        f"{r.randint(2090, 2099)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}"
        f"{r.randint(0, 999):03d}"
    )
    return body + id_number_check_char(body)


def new_phone() -> str:
    return f"+86139{random.randint(0, 99_999_999):08d}"


def children(pid: int) -> list[int]:
    """The processes `pid` started (its workers, its audit process) that still run."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return found


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    runtime: Runtime
    proc: subprocess.Popen[bytes]
    log_path: Path

    def cli(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        out = subprocess.run(
            [str(BIN / "tongban"), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def cli_fails(self, *args: str) -> str:
        """Run a command that must fail; return what it said on stderr."""
        out = subprocess.run(
            [str(BIN / "tongban"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode != 0, out.stdout
        return out.stderr

    def add_client(self, name: str, *args: str) -> dict[str, Any]:
        return self.cli("client", "add", "--name", name, *args, "--json")

    def add_user(
        self,
        *,
        password: str = "correct horse battery staple",
        totp: bool = False,
        name: str = "测试市民",
        phone: str | None = None,
    ) -> dict[str, Any]:
        id_number = new_id_number()
        args = [
            "user",
            "add",
            "--id-number",
            id_number,
            "--name",
            name,
            "--password-stdin",
            "--json",
        ]
        if phone:
            args += ["--phone", phone]
        if totp:
            args.append("--totp")
        out = self.cli(*args, stdin=password + "\n")
        out.update(id_number=id_number, password=password, phone=phone)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    database_url: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    cwd: Path | None = None,
) -> LiveServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TONGBAN_DATABASE_URL": database_url,
        "TONGBAN_ISSUER": url,
        "TONGBAN_DATA_DIR": str(data_dir),
        "TONGBAN_KEY_PUBLISH_AHEAD_SECONDS": "0",
        "TONGBAN_KEY_CHECK_SECONDS": "1",
        **(extra_env or {}),
    }
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            str(BIN / "tongban"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(f"server did not start: {log_path.read_text()[-3000:]}")
    settings = Settings(database_url=database_url, issuer=url, data_dir=data_dir)
    return LiveServer(url, env, build_runtime(settings), proc, log_path)


@dataclass
class Receiver:
    """A department system's back-channel logout endpoint (and redirect target)."""

    port: int
    received: list[str] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)
    status: int = 200

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, count: int = 1, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            self.event.wait(0.1)
            self.event.clear()
        return list(self.received)


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = parse_qs(self.rfile.read(length).decode())
            if receiver.status == 200:
                receiver.received.extend(body.get("logout_token", []))
                receiver.event.set()
            self.send_response(receiver.status)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"department system")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_INTERACTION = re.compile(r'name="interaction" value="([^"]+)"')


class FormBrowser:
    """Follows redirects by hand and submits the pages' plain HTML forms."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
        self.last: httpx.Response | None = None

    def get(self, url: str) -> httpx.Response:
        self.last = self.http.get(url)
        return self.last

    def follow(
        self, response: httpx.Response, *, stop_at: str | None = None, limit: int = 10
    ) -> httpx.Response:
        """Follow 30x while they stay on the server (or until `stop_at` prefix)."""
        for _ in range(limit):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers["location"]
            if stop_at and location.startswith(stop_at):
                return response
            if location.startswith("http") and not location.startswith(self.server.url):
                return response
            response = self.http.get(location)
        self.last = response
        return response

    def form(self, page: httpx.Response) -> dict[str, str]:
        fields = {}
        if m := _CSRF.search(page.text):
            fields["csrf_token"] = m.group(1)
        if m := _INTERACTION.search(page.text):
            fields["interaction"] = m.group(1)
        return fields

    def post(self, path: str, page: httpx.Response, **data: str) -> httpx.Response:
        self.last = self.http.post(path, data={**self.form(page), **data})
        return self.last

    def login(
        self,
        start: httpx.Response,
        user: dict[str, Any],
        *,
        otp: str | None = None,
        consent: bool = True,
    ) -> httpx.Response:
        """From a response that leads to the login page, log in (and consent)."""
        page = self.follow(start)
        # the authorization endpoint answers with the login page itself
        assert 'action="/login"' in page.text, page.text[:500]
        response = self.post("/login", page, username=user["id_number"], password=user["password"])
        return self.after_login(response, otp=otp, consent=consent)

    def after_login(
        self, response: httpx.Response, *, otp: str | None = None, consent: bool = True
    ) -> httpx.Response:
        assert response.status_code == 303, response.text[:500]
        location = response.headers["location"]
        if location.startswith("/login/otp"):
            assert otp is not None, "second factor asked"
            page = self.get(location)
            response = self.post("/login/otp", page, otp=otp)
            assert response.status_code == 303, response.text[:500]
        response = self.follow(response)
        if response.status_code == 200 and 'name="decision"' in response.text and consent:
            response = self.post("/consent", response, decision="allow")
            response = self.follow(response)
        return response


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
