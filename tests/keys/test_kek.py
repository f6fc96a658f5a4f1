import pytest

from keys.errors import UnwrapError
from keys.kek import KekFile, KeyEncryptionKeys, new_kek, parse_kek_list
from kit.ids import b64url


def test_first_kek_wraps_every_kek_unwraps() -> None:
    old = KeyEncryptionKeys([new_kek()])
    wrapped = old.wrap(b"private key", aad="signing-key:k1")
    rotated = KeyEncryptionKeys([new_kek(), old.primary])
    assert rotated.unwrap(wrapped, aad="signing-key:k1") == b"private key"
    assert rotated.needs_rewrap(wrapped)
    rewrapped = rotated.rewrap(wrapped, aad="signing-key:k1")
    assert not rotated.needs_rewrap(rewrapped)
    assert KeyEncryptionKeys([rotated.primary]).unwrap(rewrapped, aad="signing-key:k1")


def test_unwrap_is_bound_to_its_purpose() -> None:
    keks = KeyEncryptionKeys([new_kek()])
    wrapped = keks.wrap(b"x", aad="signing-key:a")
    with pytest.raises(UnwrapError):
        keks.unwrap(wrapped, aad="signing-key:b")


def test_unknown_kek_and_tampering_fail_closed() -> None:
    keks = KeyEncryptionKeys([new_kek()])
    wrapped = keks.wrap(b"secret", aad="a")
    with pytest.raises(UnwrapError, match="not configured"):
        KeyEncryptionKeys([new_kek()]).unwrap(wrapped, aad="a")
    kid, nonce, ct = wrapped.split(".")
    flipped = ct[:-2] + ("A" if ct[-2] != "A" else "B") + ct[-1]
    with pytest.raises(UnwrapError):
        keks.unwrap(f"{kid}.{nonce}.{flipped}", aad="a")
    assert b"secret" not in wrapped.encode()


def test_kek_list_from_environment_form() -> None:
    a, b = new_kek(), new_kek()
    keks = parse_kek_list(f"{a.kid}:{b64url(a.key)}, {b.kid}:{b64url(b.key)}")
    assert keks.ids == [a.kid, b.kid]


def test_kek_file_is_private_and_rotates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = KekFile(tmp_path / "kek.json")
    first = store.load_or_create()
    assert (store.path.stat().st_mode & 0o777) == 0o600
    rotated = store.prepend_new()
    assert rotated.ids[1] == first.ids[0]
    assert store.load_or_create().ids == rotated.ids
