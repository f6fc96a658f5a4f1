"""PKCS#11 keys on SoftHSM2: generated inside the token, never extractable, and used for
sealing through the same `Signer` interface as software keys (issue 3). Runs in CI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy.orm import Session, sessionmaker

from keys.pkcs11 import Pkcs11Config, Pkcs11Error, Pkcs11Signer, Pkcs11Token
from keys.pki_models import PkiKey
from keys.signer import Signer
from kit.db import make_engine, make_session_factory
from migrations import upgrade
from signing import jws_seal, pades
from tests.signing.province import blank_pdf, make_province
from tests.signing.softhsm import softhsm_token

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def token() -> Pkcs11Token:
    return softhsm_token()[0]


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('hsm') / 'hsm.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def test_es256_key_is_generated_inside_and_never_extractable(token: Pkcs11Token) -> None:
    public = token.generate("t-es256", "ES256")
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert token.is_extractable("t-es256") is False
    signer: Signer = Pkcs11Signer(token, "kid-1", "ES256", "t-es256")
    signature = signer.sign(b"data")
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, b"data", ec.ECDSA(hashes.SHA256()))
    assert signer.public_jwk()["crv"] == "P-256" and "d" not in signer.public_jwk()
    with pytest.raises(Pkcs11Error):
        token.generate("t-es256", "ES256")  # labels are unique
    token.destroy("t-es256")
    with pytest.raises(Pkcs11Error):
        token.sign("t-es256", "ES256", b"data")


def test_ps256_key(token: Pkcs11Token) -> None:
    public = token.generate("t-ps256", "PS256")
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    signature = Pkcs11Signer(token, "kid-2", "PS256", "t-ps256").sign(b"data")
    public.verify(
        signature,
        b"data",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_wrong_pin_or_token_fails_clearly() -> None:
    _, config = softhsm_token()
    with pytest.raises(Pkcs11Error):
        Pkcs11Token(Pkcs11Config(config.module, "no-such-token", config.user_pin))


def test_seal_on_softhsm_is_invisible_to_callers(
    token: Pkcs11Token, module_factory: sessionmaker[Session]
) -> None:
    """A seal whose key lives in the token seals JWS and PDF through the same calls."""
    province = make_province(module_factory, start=START, token=token)
    seal = province.new_seal(
        backend="pkcs11", name="示范市民政局电子证照专用章", seal_type="电子证照专用章"
    )
    with module_factory() as s:
        row = s.get(PkiKey, seal.key_id)
        assert row is not None and row.backend == "pkcs11" and row.wrapped_private is None
    assert token.is_extractable(row.token_label or "") is False
    sealer = province.sealer(seal.id)
    token_jws = jws_seal.seal({"licence": "营业执照"}, sealer, now=province.clock.now())
    assert jws_seal.verify(token_jws, province.anchors(), province.clock.now()).passed
    pdf = pades.seal(blank_pdf(), sealer, province.tsa(), now=province.clock.now())
    report = pades.verify(pdf, province.anchors(), province.clock.now())
    assert report.passed, report.to_dict()
