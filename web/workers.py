"""Background work each process runs: back-channel logout delivery (kicked at once after a
logout, retried on a timer) and periodic maintenance (key lifecycle, purging expired
rows). Everything is safe to run on every replica at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx

from idp.logout import deliver_due
from idp.models import AuthorizationCode, ReplayGuard
from idp.registration import purge_codes
from idp.throttle import Throttle
from web.runtime import Runtime

log = logging.getLogger("tongban.workers")


class Loop:
    """A daemon thread that runs `step` every `interval` seconds or when kicked."""

    def __init__(self, name: str, interval: float, step: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self.step = step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a failed round is retried next time; never kill the loop
                log.exception("%s round failed", self.name)
            self._wake.wait(self.interval)
            self._wake.clear()


def delivery_loop(runtime: Runtime) -> Loop:
    http = httpx.Client(timeout=5.0, follow_redirects=False)

    def step() -> None:
        while deliver_due(
            runtime.factory,
            clock=runtime.clock,
            audit=runtime.audit,
            http=http,
            max_attempts=runtime.settings.backchannel_max_attempts,
        ):
            pass

    return Loop("backchannel-logout", 1.0, step)


def maintenance_loop(runtime: Runtime) -> Loop:
    def step() -> None:
        runtime.tick_keys()
        with runtime.factory.begin() as session:
            ctx = runtime.context(session)
            now = runtime.clock.now()
            ctx.interactions.purge_expired()
            ctx.tokens.purge_expired()
            session.query(AuthorizationCode).filter(AuthorizationCode.expires_at < now).delete()
            session.query(ReplayGuard).filter(ReplayGuard.expires_at < now).delete()
            purge_codes(session, now)
            Throttle().purge(session, now)

    return Loop("maintenance", 30.0, step)
