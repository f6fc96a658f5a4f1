"""Time-bound protocol rules, driven in-process with a frozen clock on both databases:
code lifetime, SSO idle and absolute timeouts, refresh-token expiry."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.orm import Session, sessionmaker

from idp.accounts import ACR_PASSWORD
from idp.authorize import authorize, record_consent
from idp.context import Context, Services
from idp.oauth import CoreRequest, TongbanServer
from kit.clock import FrozenClock

REDIRECT = "https://dept.example.gov.cn/cb"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def world(services: Services, factory: sessionmaker[Session]) -> dict:
    with factory.begin() as s:
        ctx = Context(services, s)
        reg = ctx.clients.register(
            name="Dept", redirect_uris=[REDIRECT], scopes=["openid", "profile", "offline_access"]
        )
        account = ctx.accounts.create(
            id_number="110105209912310010", name="张三", password="correct horse battery staple"
        ).account
        _sso, cookie = ctx.sessions.create(
            account, acr=ACR_PASSWORD, amr=["pwd"], user_agent="test"
        )
        record_consent(ctx, account, reg.client, ["openid", "profile", "offline_access"])
        return {
            "client_id": reg.client.client_id,
            "secret": reg.secret,
            "cookie": cookie,
            "account_id": account.id,
        }


def run(services: Services, factory: sessionmaker[Session], fn):  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return fn(Context(services, s))


def get_code(
    services: Services, factory: sessionmaker[Session], world: dict, scope: str = "openid profile"
) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = [
        ("response_type", "code"),
        ("client_id", world["client_id"]),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]

    def go(ctx: Context) -> str:
        sso = ctx.sessions.from_cookie(world["cookie"])
        outcome = authorize(
            ctx,
            CoreRequest("GET", "https://idp/authorize", {}, params),
            sso=sso,
            browser_secret="b" * 32,
        )
        assert outcome.kind == "redirect", outcome
        return parse_qs(urlsplit(outcome.location).query)["code"][0]

    return run(services, factory, go), verifier


def token(services: Services, factory: sessionmaker[Session], world: dict, **form: str):  # type: ignore[no-untyped-def]
    def go(ctx: Context):  # type: ignore[no-untyped-def]
        req = CoreRequest(
            "POST",
            "https://idp/token",
            basic(world["client_id"], world["secret"]),
            list(form.items()),
        )
        return TongbanServer(ctx).create_token_response(req)

    return run(services, factory, go)


def test_codes_expire_after_60_seconds(
    services: Services, factory: sessionmaker[Session], world: dict, clock: FrozenClock
) -> None:
    for age, status in ((61, 400), (59, 200)):
        code, verifier = get_code(services, factory, world)
        clock.advance(age)
        resp = token(
            services,
            factory,
            world,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
        assert resp.status == status, resp.body
        if status == 400:
            assert resp.body["error"] == "invalid_grant"


def test_sessions_end_when_idle_or_too_old(
    services: Services, factory: sessionmaker[Session], world: dict, clock: FrozenClock
) -> None:
    cfg = services.config
    clock.advance(cfg.session_idle_ttl - 5)
    assert run(services, factory, lambda c: c.sessions.from_cookie(world["cookie"])) is not None
    clock.advance(cfg.session_idle_ttl + 1)  # idle since the last touch
    assert run(services, factory, lambda c: c.sessions.from_cookie(world["cookie"])) is None


def test_active_sessions_still_end_at_the_absolute_limit(
    services: Services, factory: sessionmaker[Session], world: dict, clock: FrozenClock
) -> None:
    cfg = services.config
    elapsed = 0
    while elapsed < cfg.session_absolute_ttl - cfg.session_idle_ttl:
        clock.advance(cfg.session_idle_ttl - 60)
        elapsed += cfg.session_idle_ttl - 60
        assert run(services, factory, lambda c: c.sessions.from_cookie(world["cookie"])) is not None
    clock.advance(cfg.session_absolute_ttl - elapsed + 1)
    assert run(services, factory, lambda c: c.sessions.from_cookie(world["cookie"])) is None


def test_refresh_tokens_expire_when_idle_and_keep_their_scope(
    services: Services, factory: sessionmaker[Session], world: dict, clock: FrozenClock
) -> None:
    code, verifier = get_code(services, factory, world, "openid profile offline_access")
    first = token(
        services,
        factory,
        world,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    ).body
    narrowed = token(
        services,
        factory,
        world,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        scope="openid",
    ).body
    assert narrowed["scope"] == "openid"
    widened = token(
        services,
        factory,
        world,
        grant_type="refresh_token",
        refresh_token=narrowed["refresh_token"],
        scope="openid profile admin",
    )
    assert widened.body["error"] == "invalid_scope"
    clock.advance(services.config.refresh_idle_ttl + 1)
    late = token(
        services,
        factory,
        world,
        grant_type="refresh_token",
        refresh_token=narrowed["refresh_token"],
    )
    assert late.body["error"] == "invalid_grant"


def test_logout_revokes_session_grants_but_not_offline_access(
    services: Services, factory: sessionmaker[Session], world: dict
) -> None:
    from idp.logout import end_session

    online_code, v1 = get_code(services, factory, world, "openid profile")
    online = token(
        services,
        factory,
        world,
        grant_type="authorization_code",
        code=online_code,
        redirect_uri=REDIRECT,
        code_verifier=v1,
    ).body
    offline_code, v2 = get_code(services, factory, world, "openid offline_access")
    offline = token(
        services,
        factory,
        world,
        grant_type="authorization_code",
        code=offline_code,
        redirect_uri=REDIRECT,
        code_verifier=v2,
    ).body
    run(
        services,
        factory,
        lambda c: end_session(c, c.sessions.from_cookie(world["cookie"]), reason="test"),
    )
    gone = token(
        services, factory, world, grant_type="refresh_token", refresh_token=online["refresh_token"]
    )
    assert gone.body["error"] == "invalid_grant"
    kept = token(
        services, factory, world, grant_type="refresh_token", refresh_token=offline["refresh_token"]
    )
    assert kept.status == 200
