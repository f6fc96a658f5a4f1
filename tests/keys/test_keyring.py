from datetime import timedelta

from joserfc import jwt
from sqlalchemy.orm import Session, sessionmaker

from keys.jws import sign_compact, verify_compact
from keys.kek import KeyEncryptionKeys, new_kek
from keys.keyring import KeyRing, RotationPolicy
from keys.models import SigningKey
from kit.clock import FrozenClock


def ring() -> KeyRing:
    return KeyRing(
        KeyEncryptionKeys([new_kek()]),
        RotationPolicy(
            rotate_every=timedelta(days=30),
            publish_ahead=timedelta(minutes=10),
            retire_after=timedelta(hours=1),
        ),
    )


def test_first_start_creates_one_active_key_per_alg(session: Session) -> None:
    kr, clock = ring(), FrozenClock()
    kr.ensure(session, clock.now())
    snap = kr.load(session)
    assert set(snap.signers) == {"ES256", "RS256"}
    for key in snap.public_jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private part in JWKS"
    kids = [k["kid"] for k in snap.public_jwks["keys"]]
    assert len(kids) == len(set(kids))


def test_private_keys_are_stored_wrapped(session: Session) -> None:
    kr, clock = ring(), FrozenClock()
    kr.ensure(session, clock.now())
    for row in session.query(SigningKey):
        assert "PRIVATE KEY" not in row.wrapped_private
        assert row.wrapped_private.startswith(kr.keks.primary.kid + ".")


def test_rotation_publishes_before_signing_and_retires_after_tokens_expire(
    factory: sessionmaker[Session],
) -> None:
    kr, clock = ring(), FrozenClock()
    with factory.begin() as s:
        kr.ensure(s, clock.now())
        old = kr.load(s).signer("ES256")
        token = sign_compact(old, {"sub": "x"}, typ="at+jwt")
    with factory.begin() as s:
        (new_es, _new_rs) = kr.rotate(s, clock.now())
        snap = kr.load(s)
        # published, not yet signing
        assert new_es in [k["kid"] for k in snap.public_jwks["keys"]]
        assert snap.signer("ES256").kid == old.kid
    clock.advance(601)
    with factory.begin() as s:
        kr.tick(s, clock.now())
        snap = kr.load(s)
        assert snap.signer("ES256").kid == new_es
        assert snap.states[old.kid] == "retiring"
        # a token signed by the old key still verifies
        verify_compact(token, snap.verify_keys, algorithms=["ES256"], typ="at+jwt")
    clock.advance(3601)
    with factory.begin() as s:
        kr.tick(s, clock.now())
        snap = kr.load(s)
        assert old.kid not in snap.states


def test_automatic_rotation_on_schedule(session: Session) -> None:
    kr, clock = ring(), FrozenClock()
    kr.ensure(session, clock.now())
    assert kr.tick(session, clock.now()) == []
    clock.advance(31 * 86400)
    changes = kr.tick(session, clock.now())
    assert sorted(state for _, state in changes) == ["pending", "pending"]


def test_tokens_verify_with_an_independent_library(session: Session) -> None:
    kr, clock = ring(), FrozenClock()
    kr.ensure(session, clock.now())
    snap = kr.load(session)
    for alg in ("ES256", "RS256"):
        token = sign_compact(snap.signer(alg), {"iss": "t", "n": "通办"}, typ="JWT")
        decoded = jwt.decode(token, snap.verify_keys, algorithms=[alg])
        assert decoded.claims["n"] == "通办"


def test_verifier_rejects_none_and_foreign_keys(session: Session) -> None:
    import pytest

    from keys.jws import InvalidJws
    from keys.signer import SoftwareSigner, generate_private_key
    from kit.ids import b64url

    kr, clock = ring(), FrozenClock()
    kr.ensure(session, clock.now())
    snap = kr.load(session)
    header = b64url(b'{"alg":"none"}')
    with pytest.raises(InvalidJws):
        verify_compact(f"{header}.{b64url(b'{}')}.", snap.verify_keys, algorithms=["ES256"])
    # a stranger's key under one of our kids
    stranger = SoftwareSigner(snap.signer("ES256").kid, "ES256", generate_private_key("ES256"))
    with pytest.raises(InvalidJws):
        verify_compact(sign_compact(stranger, {"a": 1}), snap.verify_keys, algorithms=["ES256"])
    # the right key but an algorithm the verifier did not allow
    with pytest.raises(InvalidJws):
        verify_compact(
            sign_compact(snap.signer("RS256"), {"a": 1}), snap.verify_keys, algorithms=["ES256"]
        )
