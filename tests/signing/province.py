"""A throwaway province for tests: PKI, seals, TSA and the trust anchors a verifier gets,
on a real database (the caller's session factory)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy.orm import Session, sessionmaker

from keys.kek import KeyEncryptionKeys, new_kek
from keys.pkcs11 import Pkcs11Token
from keys.pki import ISSUING, ROOT, KeyStore, Pki, PkiSettings
from kit.clock import FrozenClock
from kit.db import transaction
from signing import seals
from signing.models import Seal
from signing.seals import SealSigner
from signing.trust import TrustAnchors
from signing.tsa import TimestampAuthority, load_tsa

USCC = "91110108MA01AB2C3T"
OTHER_USCC = "11110000000K00017E"


@dataclass
class Province:
    factory: sessionmaker[Session]
    clock: FrozenClock
    pki: Pki
    name: str = "示范省"
    seal_ids: list[str] = field(default_factory=list)

    def session(self) -> Session:
        return self.factory()

    def new_seal(self, **overrides: object) -> Seal:
        args: dict[str, object] = {
            "department_uscc": USCC,
            "department_name": "示范市民政局",
            "name": "示范市民政局业务专用章",
            "seal_type": "业务专用章",
        }
        args.update(overrides)
        with transaction(self.factory) as s:
            seal = seals.create_seal(s, self.clock, self.pki, **args)  # type: ignore[arg-type]
        self.seal_ids.append(seal.id)
        return seal

    def sealer(self, seal_id: str, at: datetime | None = None) -> SealSigner:
        with self.factory() as s:
            return seals.open_seal(s, self.pki, seal_id, at or self.clock.now())

    def force_sealer(self, seal_id: str) -> SealSigner:
        """The seal's signer without the service's checks (to forge misuse in tests)."""
        with self.factory() as s:
            seal = seals.get_seal(s, seal_id)
            cert = self.pki.certificate(s, seal.certificate_serial)
            chain = self.pki.chain_for(s, cert)
            key_row = self.pki.key_row(s, seal.key_id)
            from signing.trust import x5t_s256

            return SealSigner(
                seal.id,
                seal.name,
                seal.seal_type,
                seal.purpose,
                seal.department_uscc,
                seal.department_name,
                self.pki.keys.signer(key_row, kid=x5t_s256(chain.leaf)),
                chain,
            )

    def tsa(self) -> TimestampAuthority:
        with self.factory() as s:
            return load_tsa(s, self.pki, self.clock)

    def root(self) -> x509.Certificate:
        with self.factory() as s:
            return self.pki.root_certificate(s)

    def issuing(self) -> x509.Certificate:
        with self.factory() as s:
            return self.pki.ca_certificate(s, ISSUING)

    def crls(self, at: datetime | None = None) -> tuple[x509.CertificateRevocationList, ...]:
        with transaction(self.factory) as s:
            return tuple(
                x509.load_der_x509_crl(self.pki.current_crl(s, name, at or self.clock.now()))
                for name in (ROOT, ISSUING)
            )

    def anchors(self, at: datetime | None = None, *, with_crls: bool = True) -> TrustAnchors:
        return TrustAnchors(roots=(self.root(),), crls=self.crls(at) if with_crls else ())


def make_province(
    factory: sessionmaker[Session],
    *,
    start: datetime,
    token: Pkcs11Token | None = None,
    name: str = "示范省",
) -> Province:
    clock = FrozenClock(start)
    pki = Pki(
        KeyStore(KeyEncryptionKeys([new_kek()]), token),
        PkiSettings(issuer="https://tongban.example.gov.cn", province=name),
    )
    with transaction(factory) as s:
        pki.init(s, clock.now())
    return Province(factory, clock, pki, name)


def blank_pdf(pages: int = 1) -> bytes:
    """A minimal valid PDF with A4 pages and a line of text, written by pyHanko."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    writer = PdfFileWriter()
    for _ in range(pages):
        stream = generic.StreamObject(stream_data=b"BT /F1 24 Tf 72 720 Td (Licence) Tj ET")
        font = generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Font"),
                generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
                generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
            }
        )
        page = generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Page"),
                generic.NameObject("/MediaBox"): generic.ArrayObject(
                    [generic.NumberObject(v) for v in (0, 0, 595, 842)]
                ),
                generic.NameObject("/Contents"): writer.add_object(stream),
                generic.NameObject("/Resources"): generic.DictionaryObject(
                    {
                        generic.NameObject("/Font"): generic.DictionaryObject(
                            {generic.NameObject("/F1"): writer.add_object(font)}
                        )
                    }
                ),
            }
        )
        writer.insert_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def later(province: Province, **delta: float) -> datetime:
    return province.clock.now() + timedelta(**delta)
