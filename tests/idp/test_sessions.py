"""SSO sessions and completing a login (`idp/sessions.py`, `idp/signin.py`), in-process on
both databases with a frozen clock: re-authentication keeps the session (its `sid` and
the departments that joined it) but replaces the cookie secret (ASVS 7.2.4); another
account logging in ends the previous session everywhere; cookies are stored only as
keyed hashes."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from idp.accounts import ACR_MFA, ACR_PASSWORD
from idp.context import Context, Services
from idp.errors import InteractionGone
from idp.models import Account, BackchannelDelivery, Grant, Interaction, SsoSession
from idp.signin import establish_session
from kit.clock import FrozenClock
from kit.db import Base
from kit.ids import b64url, keyed_hash
from migrations import import_models
from tests.idp.conftest import RecordingAudit

PASSWORD = "correct horse battery staple"


def citizen(ctx: Context, number: str, name: str = "张三") -> Account:
    return ctx.accounts.create(id_number=number, name=name, password=PASSWORD).account


@pytest.fixture
def alice(ctx: Context) -> Account:
    return citizen(ctx, "110105209912310010", "张三")


@pytest.fixture
def bob(ctx: Context) -> Account:
    return citizen(ctx, "110105209901010012", "李四")


@pytest.fixture
def dept(ctx: Context) -> str:
    reg = ctx.clients.register(
        name="Dept",
        redirect_uris=["https://dept.example.gov.cn/cb"],
        backchannel_logout_uri="https://dept.example.gov.cn/backchannel",
    )
    return reg.client.client_id


def fresh(ctx: Context, sid: str) -> SsoSession:
    """The row as stored (not the identity map's copy)."""
    ctx.session.flush()
    ctx.session.expire_all()
    row = ctx.session.get(SsoSession, sid)
    assert row is not None
    return row


def test_reauthentication_keeps_sid_and_participants_but_replaces_the_cookie(
    ctx: Context, alice: Account, dept: str, clock: FrozenClock, audit: RecordingAudit
) -> None:
    first, cookie = establish_session(
        ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=None
    )
    sid = first.id
    sso = ctx.sessions.from_cookie(cookie)
    assert sso is not None and sso.id == sid
    ctx.sessions.add_participant(sso, dept)
    created_at, old_hash = sso.created_at, sso.cookie_hash
    clock.advance(300)

    # step-up: the same account authenticates again in the same browser
    again, cookie2 = establish_session(
        ctx, alice, acr=ACR_MFA, amr=["pwd", "otp"], current_cookie=cookie
    )
    sid2 = again.id
    assert sid2 == sid
    assert cookie2 != cookie
    assert ctx.sessions.from_cookie(cookie) is None  # the old cookie no longer works
    again = ctx.sessions.from_cookie(cookie2)
    assert again is not None and again.id == sid

    row = fresh(ctx, sid)
    assert row.cookie_hash != old_hash
    assert row.ended_at is None
    assert row.acr == ACR_MFA and row.amr == ["pwd", "otp"]
    assert row.auth_time.timestamp() == pytest.approx(clock.now().timestamp(), abs=1e-3)
    assert row.created_at.timestamp() == pytest.approx(created_at.timestamp(), abs=1e-3)
    assert ctx.sessions.participants(row) == [dept]  # single logout still reaches them
    rows = ctx.session.scalars(select(SsoSession).where(SsoSession.account_id == alice.id))
    assert [r.id for r in rows] == [sid]
    assert "session.ended" not in audit.names()
    reauth = [e for e in audit.events if e["event"] == "session.created"]
    assert len(reauth) == 2 and reauth[-1]["details"].get("reauthenticated") is True


def test_another_account_logging_in_ends_the_previous_session(
    ctx: Context, alice: Account, bob: Account, dept: str, audit: RecordingAudit
) -> None:
    alices, cookie_a = establish_session(
        ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=None
    )
    sid_a = alices.id
    sso_a = ctx.sessions.get(sid_a)
    assert sso_a is not None
    ctx.sessions.add_participant(sso_a, dept)
    grant = ctx.tokens.new_grant(
        client_id=dept,
        account_id=alice.id,
        session_id=sid_a,
        scope="openid profile",
        auth_time=sso_a.auth_time,
        acr=ACR_PASSWORD,
        amr=["pwd"],
        claims=None,
    )
    ctx.session.flush()

    bobs, cookie_b = establish_session(
        ctx, bob, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=cookie_a
    )
    sid_b = bobs.id
    assert sid_b != sid_a and cookie_b != cookie_a
    assert ctx.sessions.from_cookie(cookie_a) is None
    current = ctx.sessions.from_cookie(cookie_b)
    assert current is not None and current.account_id == bob.id
    assert ctx.sessions.participants(current) == []  # B inherits nothing from A

    ended = fresh(ctx, sid_a)
    assert ended.ended_at is not None and ended.account_id == alice.id
    stored_grant = ctx.session.get(Grant, grant.id)
    assert stored_grant is not None and stored_grant.revoked_at is not None
    deliveries = ctx.session.scalars(
        select(BackchannelDelivery).where(BackchannelDelivery.session_id == sid_a)
    ).all()
    assert [(d.client_id, d.status) for d in deliveries] == [(dept, "pending")]
    ends = [e for e in audit.events if e["event"] == "session.ended"]
    assert len(ends) == 1
    assert ends[0]["subject"] == alice.id
    assert ends[0]["details"] == {"reason": "another_account_logged_in"}


def test_a_dead_cookie_never_revives_its_session(
    ctx: Context, alice: Account, clock: FrozenClock
) -> None:
    first, cookie = establish_session(
        ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=None
    )
    sid = first.id
    sso = ctx.sessions.get(sid)
    assert sso is not None
    ctx.sessions.end(sso, reason="logout")
    relogged, cookie2 = establish_session(
        ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=cookie
    )
    after_logout = relogged.id
    assert after_logout != sid and fresh(ctx, sid).ended_at is not None

    clock.advance(ctx.config.session_idle_ttl + 1)  # idle: a new session, not the old sid
    idle_login, _ = establish_session(
        ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=cookie2
    )
    after_idle = idle_login.id
    assert after_idle not in (sid, after_logout)
    for junk in ("", "x" * 200, "not-a-cookie"):
        other, _ = establish_session(ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=junk)
        assert other.id not in (sid, after_logout, after_idle)


def test_session_cookies_are_stored_only_as_keyed_hashes(
    ctx: Context, alice: Account, dept: str, audit: RecordingAudit
) -> None:
    sso, first = establish_session(ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=None)
    sid = sso.id
    ctx.sessions.add_participant(sso, dept)
    _, second = establish_session(ctx, alice, acr=ACR_MFA, amr=["pwd", "otp"], current_cookie=first)
    ctx.session.flush()

    # 256-bit random cookie secrets, separate from the public sid
    assert len(first) >= 43 and len(second) >= 43 and len(sid) >= 22
    assert sid not in (first, second)

    row = fresh(ctx, sid)
    key = ctx.services.secrets.get("secret-hash")
    assert row.cookie_hash == keyed_hash(key, second)  # HMAC-SHA256 under a secret key
    for unkeyed in (
        hashlib.sha256(second.encode()).hexdigest(),
        b64url(hashlib.sha256(second.encode()).digest()),
    ):
        assert row.cookie_hash != unkeyed

    # no cookie value anywhere in the database or the audit trail
    import_models()
    present = set(inspect(ctx.session.connection()).get_table_names())
    scanned = 0
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            continue
        for record in ctx.session.execute(table.select()):
            text = " ".join(str(v) for v in record)
            assert first not in text and second not in text, table.name
            scanned += 1
    assert scanned > 3
    for event in audit.events:
        assert first not in str(event) and second not in str(event)


def test_sessions_follow_the_configured_lifetimes(ctx: Context, alice: Account) -> None:
    first, cookie = establish_session(
        ctx, alice, acr=ACR_PASSWORD, amr=["pwd"], current_cookie=None
    )
    sid = first.id
    row = fresh(ctx, sid)
    assert row.expires_at - row.created_at == timedelta(seconds=ctx.config.session_absolute_ttl)
    assert ctx.config.session_idle_ttl == 30 * 60 and ctx.config.session_absolute_ttl == 12 * 3600
    assert ctx.sessions.from_cookie(cookie) is not None


def test_rows_inserted_without_the_unit_of_work_are_still_tracked(
    ctx: Context, alice: Account, dept: str
) -> None:
    """`kit.db.insert_tracked`: a new session and interaction are written by one insert,
    yet come back as persistent objects whose later changes are flushed."""
    sso, _ = ctx.sessions.create(alice, acr=ACR_PASSWORD, amr=["pwd"], user_agent="ua")
    row = ctx.interactions.start({"client_id": dept}, browser_secret="s" * 32, stage="login")
    assert inspect(sso).persistent and inspect(row).persistent
    assert not ctx.session.new and not ctx.session.dirty  # written already, nothing pending

    def stored() -> tuple[str, str]:  # read with Core: no flush first
        db = ctx.session.connection()
        acr = db.execute(select(SsoSession.acr).where(SsoSession.id == sso.id)).scalar_one()
        stage = db.execute(select(Interaction.stage).where(Interaction.id == row.id))
        return acr, stage.scalar_one()

    assert stored() == (ACR_PASSWORD, "login")
    sso.acr = ACR_MFA
    row.stage = "consent"
    assert stored() == (ACR_PASSWORD, "login")
    ctx.session.flush()
    assert stored() == (ACR_MFA, "consent")


def test_a_finished_interaction_is_deleted_with_its_unwritten_changes(
    ctx: Context, dept: str
) -> None:
    row = ctx.interactions.start({"client_id": dept}, browser_secret="s" * 32, stage="login")
    loaded = ctx.interactions.load(row.id, browser_secret="s" * 32)
    assert loaded is row
    row.stage = "otp"  # pending, never written
    ctx.interactions.finish(row)
    ctx.session.flush()
    assert ctx.session.get(Interaction, row.id) is None
    assert row not in ctx.session


def test_joining_a_session_twice_keeps_one_participant(
    ctx: Context, alice: Account, dept: str
) -> None:
    sso, _ = ctx.sessions.create(alice, acr=ACR_PASSWORD, amr=["pwd"], user_agent=None)
    ctx.sessions.add_participant(sso, dept)
    ctx.sessions.add_participant(sso, dept)
    assert ctx.sessions.participants(sso) == [dept]


def test_only_one_of_two_racing_submits_finishes_an_interaction(
    services: Services, factory: sessionmaker[Session], dept: str, ctx: Context
) -> None:
    """Two submits of one step load the same interaction; the second to finish it finds
    the row gone and must roll back rather than issue a second code or session."""
    row = ctx.interactions.start({"client_id": dept}, browser_secret="s" * 32, stage="login")
    ctx.session.commit()
    first, second = factory(), factory()
    try:
        one, two = Context(services, first), Context(services, second)
        mine = one.interactions.load(row.id, browser_secret="s" * 32)
        theirs = two.interactions.load(row.id, browser_secret="s" * 32)
        assert mine is not None and theirs is not None
        one.interactions.finish(mine)
        first.commit()
        with pytest.raises(InteractionGone):
            two.interactions.finish(theirs)
    finally:
        second.rollback()
        first.close()
        second.close()
