"""Starting a registration or a password reset does the same work whoever is asking: what
depends on it (lookups, the code, notices) happens in a second step, after the answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event, func, select

from idp.context import Context
from idp.models import PhoneCode
from idp.registration import DevelopmentSms, PhoneFlows, Registry
from idp.throttle import Throttle

CITIZEN = "110105209912310010"
OTHER = "11010519491231002X"
PHONE = "+8613800138000"


def flows(ctx: Context) -> PhoneFlows:
    pii = ctx.services.pii
    return PhoneFlows(
        ctx,
        verifier=Registry(ctx.session, pii, ctx.clock),
        sms=DevelopmentSms(pii, ctx.clock),
        throttle=Throttle(window=3600),  # the quotas, counted in the database
    )


@contextmanager
def statements(ctx: Context) -> Iterator[list[str]]:
    """The SQL sent while the block runs, with its parameters left out."""
    seen: list[str] = []
    engine = ctx.session.get_bind()

    def record(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def same_work(ctx: Context, start: Callable[[str], str], known: str, unknown: str) -> None:
    """The same statements, pending writes flushed, for both (and some: the quotas)."""
    start(known)  # warm caches (keys, compiled statements) before comparing
    ctx.session.flush()
    with statements(ctx) as for_known:
        start(known)
        ctx.session.flush()
    with statements(ctx) as for_unknown:
        start(unknown)
        ctx.session.flush()
    assert for_known and for_known == for_unknown


def codes(ctx: Context) -> int:
    return int(ctx.session.execute(select(func.count()).select_from(PhoneCode)).scalar_one())


def test_a_reset_starts_alike_for_known_and_unknown_users(ctx: Context) -> None:
    ctx.accounts.create(
        id_number=CITIZEN, name="张三", password="correct horse battery staple", phone=PHONE
    )
    ctx.session.flush()
    same_work(ctx, lambda who: flows(ctx).start_reset(who), CITIZEN, OTHER)
    same_work(ctx, lambda who: flows(ctx).start_reset(who), PHONE, "+8613900139000")
    assert codes(ctx) == 0

    flow = flows(ctx).start_reset(CITIZEN)
    flows(ctx).continue_reset(flow, CITIZEN)
    flows(ctx).continue_reset(flows(ctx).start_reset(OTHER), OTHER)
    assert codes(ctx) == 1  # for the known account only, under the flow it was given
    [message] = DevelopmentSms(ctx.services.pii, ctx.clock).outbox(ctx.session)
    assert message["to"] == PHONE
    match = re.search(r"验证码 (\d{6})", message["text"])
    assert match
    account_id = flows(ctx).finish_reset(
        flow=flow, code=match.group(1), password="a new long passphrase"
    )
    assert ctx.accounts.get(account_id).id == ctx.accounts.find_by_username(CITIZEN).id


def test_a_registration_starts_alike_for_new_and_registered_numbers(ctx: Context) -> None:
    ctx.accounts.create(
        id_number=CITIZEN, name="张三", password="correct horse battery staple", phone=PHONE
    )
    ctx.session.flush()

    def start(number: str) -> str:
        return flows(ctx).start_registration(id_number=number, name="李四", phone="13900139000")

    same_work(ctx, start, CITIZEN, OTHER)
    assert codes(ctx) == 0
    outbox = DevelopmentSms(ctx.services.pii, ctx.clock)
    assert outbox.outbox(ctx.session) == []
    # the second step: a notice to the registered account's own phone, no code
    flows(ctx).continue_registration(
        start(CITIZEN), id_number=CITIZEN, name="李四", phone="13900139000"
    )
    [notice] = outbox.outbox(ctx.session)
    assert notice["to"] == PHONE and "尝试用您的身份号码注册" in notice["text"]
    assert codes(ctx) == 0
