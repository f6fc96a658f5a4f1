import time

import pytest

from idp.context import Context
from idp.errors import IdpError, LoginFailed, PasswordRejected, SecondFactorFailed
from idp.models import Account
from idp.totp import code_at
from kit.clock import FrozenClock
from kit.identifiers import IdentifierError

CITIZEN = "110105209912310010"
PASSWORD = "correct horse battery staple"


def test_id_number_is_encrypted_and_found_by_keyed_index(ctx: Context) -> None:
    new = ctx.accounts.create(
        id_number=CITIZEN, name="张三", password=PASSWORD, phone="13800138000"
    )
    row = ctx.session.get(Account, new.account.id)
    assert row is not None
    assert CITIZEN not in row.id_number_enc and CITIZEN not in row.id_number_index
    assert "13800138000" not in (row.phone_enc or "") + (row.phone_index or "")
    assert ctx.accounts.find_by_username(CITIZEN.lower()) is row
    assert ctx.accounts.find_by_username("+86 138-0013-8000") is row
    assert ctx.accounts.id_number(row) == CITIZEN
    assert ctx.accounts.masked_id_number(row) == "110*************10"


def test_bad_id_numbers_and_weak_passwords_are_refused(ctx: Context) -> None:
    with pytest.raises(IdentifierError):
        ctx.accounts.create(id_number="110105209912310011", name="x", password=PASSWORD)
    for weak in ("short", "password123", "woaini1314", "张三张三张三张三"):
        with pytest.raises(PasswordRejected):
            ctx.accounts.create(id_number=CITIZEN, name="张三张三", password=weak)
    ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD)
    with pytest.raises(IdpError):
        ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD)


def test_long_unicode_passwords_are_not_truncated(ctx: Context) -> None:
    long = "通办" * 40 + "!"
    new = ctx.accounts.create(id_number=CITIZEN, name="张三", password=long)
    assert ctx.accounts.authenticate_password(CITIZEN, long) is new.account
    with pytest.raises(LoginFailed):
        ctx.accounts.authenticate_password(CITIZEN, long[:-1])


def test_unknown_user_and_wrong_password_look_the_same(ctx: Context) -> None:
    ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD)
    errors, times = [], []
    for username in (CITIZEN, "11010519491231002X", "not-an-id"):
        start = time.perf_counter()
        with pytest.raises(LoginFailed) as caught:
            ctx.accounts.authenticate_password(username, "wrong password here")
        times.append(time.perf_counter() - start)
        errors.append((caught.value.description, caught.value.status, caught.value.zh))
    assert len(set(errors)) == 1
    # every path runs one argon2 verification: none is several times faster than another
    assert max(times) < 4 * min(times)


def test_lockout_after_repeated_failures_then_unlocks(ctx: Context, clock: FrozenClock) -> None:
    ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD)
    for _ in range(ctx.config.lockout_threshold):
        with pytest.raises(LoginFailed):
            ctx.accounts.authenticate_password(CITIZEN, "wrong password here")
    with pytest.raises(LoginFailed):  # right password, but locked
        ctx.accounts.authenticate_password(CITIZEN, PASSWORD)
    clock.advance(ctx.config.lockout_seconds + 1)
    assert ctx.accounts.authenticate_password(CITIZEN, PASSWORD)


def test_totp_codes_work_once_with_one_step_of_skew(ctx: Context, clock: FrozenClock) -> None:
    from datetime import timedelta

    new = ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD, totp=True)
    secret, account = new.totp_secret, new.account
    assert secret and len(new.recovery_codes) == 10
    now = clock.now()
    with pytest.raises(SecondFactorFailed):  # two steps old: outside the skew
        ctx.accounts.verify_second_factor(account, code_at(secret, now - timedelta(seconds=60)))
    previous = code_at(secret, now - timedelta(seconds=30))
    assert ctx.accounts.verify_second_factor(account, previous) == "otp"  # one step old
    with pytest.raises(SecondFactorFailed):
        ctx.accounts.verify_second_factor(account, previous)  # each code works once
    ahead = code_at(secret, now + timedelta(seconds=30))
    assert ctx.accounts.verify_second_factor(account, ahead) == "otp"  # one step ahead
    with pytest.raises(SecondFactorFailed):  # older than the last used step
        ctx.accounts.verify_second_factor(account, code_at(secret, now))


def test_recovery_codes_work_once(ctx: Context) -> None:
    new = ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD, totp=True)
    code = new.recovery_codes[0]
    assert ctx.accounts.verify_second_factor(new.account, code.lower()) == "otp"
    with pytest.raises(SecondFactorFailed):
        ctx.accounts.verify_second_factor(new.account, code)


def test_lockout_is_per_address_and_global_only_at_the_ceiling(ctx: Context) -> None:
    from idp.context import Context as Ctx

    ctx.accounts.create(id_number=CITIZEN, name="张三", password=PASSWORD)
    for _ in range(ctx.config.lockout_threshold):
        with pytest.raises(LoginFailed):
            ctx.accounts.authenticate_password(CITIZEN, "wrong password here", source="10.0.0.1")
    with pytest.raises(LoginFailed):  # locked for the attacker's address
        ctx.accounts.authenticate_password(CITIZEN, PASSWORD, source="10.0.0.1")
    citizen = Ctx(ctx.services, ctx.session, source="10.0.0.2")
    assert citizen.accounts.authenticate_password(CITIZEN, PASSWORD, source="10.0.0.2")
    # failures from many addresses lock the account for everyone at the ceiling
    for i in range(ctx.config.lockout_ceiling):
        with pytest.raises(LoginFailed):
            ctx.accounts.authenticate_password(
                CITIZEN, "wrong password here", source=f"10.1.{i // 200}.{i % 200}"
            )
    with pytest.raises(LoginFailed):
        citizen.accounts.authenticate_password(CITIZEN, PASSWORD, source="10.0.0.2")
