"""The per-process knowledge of access tokens: verified signatures and revocations, fed
by this process's commits at once and by the database no later than `sync_seconds`."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from idp.context import Context, Services
from idp.token_cache import AccessTokenCache
from idp.tokens import WouldBlock
from keys.jws import InvalidJws
from keys.models import SigningKey
from kit.clock import FrozenClock


@pytest.fixture
def cache(
    services: Services,
    factory: sessionmaker[Session],
    clock: FrozenClock,
) -> AccessTokenCache:
    cache = AccessTokenCache(clock=clock, token_ttl=600, sync_seconds=0.2)
    cache.attach(factory)
    services.token_cache = cache
    return cache


@pytest.fixture
def machine(services: Services, factory: sessionmaker[Session]) -> str:
    with factory() as session:
        reg = Context(services, session).clients.register(
            name="Machine", grant_types=["client_credentials"], scopes=["licence:read"]
        )
        session.commit()
        return reg.client.client_id


def machine_token(ctx: Context, client_id: str) -> dict:
    token, _ = ctx.tokens.access_token(client_id=client_id, sub=client_id, scope="licence:read")
    return {"token": token, "claims": ctx.tokens.verify_access_token(token)}


def unit(services: Services, factory: sessionmaker[Session], *, may_block: bool = True) -> Context:
    return Context(services, factory(), may_block=may_block)


def test_nothing_is_answered_from_stale_knowledge(
    cache: AccessTokenCache,
    services: Services,
    factory: sessionmaker[Session],
    machine: str,
) -> None:
    ctx = unit(services, factory)
    claims = machine_token(ctx, machine)["claims"]
    assert cache.revoked(claims) is False  # the check above read the revocations
    time.sleep(0.25)
    assert cache.revoked(claims) is None
    # on the event loop the caller is told to move to the thread pool, never guessed at
    with pytest.raises(WouldBlock):
        unit(services, factory, may_block=False).tokens.is_revoked(claims, may_block=False)
    ctx.session.close()


def test_own_revocation_counts_once_committed_and_not_if_rolled_back(
    cache: AccessTokenCache,
    services: Services,
    factory: sessionmaker[Session],
    machine: str,
) -> None:
    ctx = unit(services, factory)
    kept, dropped = machine_token(ctx, machine), machine_token(ctx, machine)
    ctx.session.commit()
    ctx.tokens.revoke_access_token(dropped["claims"])
    assert cache.revoked(dropped["claims"]) is False  # not before the commit
    ctx.session.rollback()
    assert cache.revoked(dropped["claims"]) is False
    ctx.tokens.revoke_access_token(kept["claims"])
    ctx.session.commit()
    assert cache.revoked(kept["claims"]) is True
    with pytest.raises(InvalidJws, match="revoked"):
        ctx.tokens.verify_access_token(kept["token"])
    ctx.session.close()


def test_revocations_of_other_processes_are_read_from_the_database(
    cache: AccessTokenCache,
    services: Services,
    factory: sessionmaker[Session],
    clock: FrozenClock,
    machine: str,
) -> None:
    ctx = unit(services, factory)
    token = machine_token(ctx, machine)
    grant = ctx.tokens.new_grant(
        client_id=machine,
        account_id=None,
        session_id=None,
        scope="openid",
        auth_time=None,
        acr=None,
        amr=None,
        claims=None,
    )
    ctx.session.commit()
    user_claims = {**token["claims"], "jti": "other", "gid": grant.id}
    assert cache.revoked(token["claims"]) is False and cache.revoked(user_claims) is False
    # "another process": a session the cache is not attached to
    other = Session(factory.kw["bind"])
    other_tokens = Context(replace(services, token_cache=None), other).tokens
    other_tokens.revoke_access_token(token["claims"])
    other_tokens.revoke_grant(grant.id, "test")
    other.commit()
    other.close()
    assert cache.revoked(token["claims"]) is False  # not yet known here ...
    time.sleep(0.25)
    assert cache.revoked(token["claims"]) is None  # ... and no longer answered from memory
    cache.sync(ctx.session)
    assert cache.revoked(token["claims"]) is True
    assert cache.revoked(user_claims) is True
    ctx.session.close()


def test_a_token_of_a_removed_client_is_no_longer_active(
    cache: AccessTokenCache,
    services: Services,
    factory: sessionmaker[Session],
) -> None:
    ctx = unit(services, factory)
    reg = ctx.clients.register(
        name="Machine", grant_types=["client_credentials"], scopes=["licence:read"]
    )
    ctx.session.commit()
    token = machine_token(ctx, reg.client.client_id)["token"]
    ctx.clients.remove(reg.client.client_id)
    ctx.session.commit()
    with pytest.raises(InvalidJws, match="client"):
        ctx.tokens.verify_access_token(token)
    ctx.session.close()


def test_expired_entries_are_forgotten(
    cache: AccessTokenCache,
    services: Services,
    factory: sessionmaker[Session],
    clock: FrozenClock,
    machine: str,
) -> None:
    ctx = unit(services, factory)
    token = machine_token(ctx, machine)
    ctx.tokens.revoke_access_token(token["claims"])
    ctx.session.commit()
    assert cache.verified(token["token"], ctx.keys.fingerprint) is not None
    clock.advance(3600)
    cache._full_read_at = float("-inf")  # a full read (and pruning) on this sync
    cache._synced_at = float("-inf")
    cache.sync(ctx.session)
    assert cache.verified(token["token"], ctx.keys.fingerprint) is None
    assert token["claims"]["jti"] not in cache._jtis
    ctx.session.close()


def test_a_revoked_signing_key_fails_its_tokens_at_once(
    cache: AccessTokenCache,
    services: Services,
    factory: sessionmaker[Session],
    machine: str,
) -> None:
    ctx = unit(services, factory)
    token = machine_token(ctx, machine)["token"]
    assert cache.verified(token, ctx.keys.fingerprint) is not None
    kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
    with factory.begin() as session:  # what `KeyRing.revoke` does after a compromise
        session.execute(update(SigningKey).where(SigningKey.kid == kid).values(state="revoked"))
    ctx.session.close()
    later = unit(services, factory)
    with pytest.raises(InvalidJws):
        later.tokens.verify_access_token(token)
    later.session.close()


def test_tokens_living_longer_than_any_we_issue_are_never_kept(cache: AccessTokenCache) -> None:
    cache.remember("t", {"iat": 0, "exp": 3601}, "keys")
    assert cache.verified("t", "keys") is None
    cache.remember("t", {"iat": 0, "exp": 600}, "keys")
    assert cache.verified("t", "keys") == {"iat": 0, "exp": 600}
    assert cache.verified("t", "other keys") is None
