"""Frozen verification reports in the vocabulary of ETSI EN 319 102-1 §5.1.3.

A report states only what the verifier established: the bottom line (PASSED,
INDETERMINATE, FAILED) with a sub-indication (Table 5 of EN 319 102-1), the seal and
department the signing certificate names, the signing time and where it came from, the
certificate path, and every check made, in order. The verified document is included only
when the bottom line is PASSED (fail closed, as sigstore does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateSummary",
    "Check",
    "Indication",
    "ReportEncoder",
    "SealIdentity",
    "SubIndication",
    "VerificationReport",
    "seal_identity",
    "summarise_certificate",
]


class Indication(StrEnum):
    """EN 319 102-1 §5.1.3 main status indications."""

    PASSED = "PASSED"
    INDETERMINATE = "INDETERMINATE"
    FAILED = "FAILED"


class SubIndication(StrEnum):
    """EN 319 102-1 Table 5. Each sub-indication belongs to exactly one indication."""

    # TOTAL-FAILED
    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    # INDETERMINATE
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    CERTIFICATE_CHAIN_GENERAL_FAILURE = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    NO_SIGNING_CERTIFICATE_FOUND = "NO_SIGNING_CERTIFICATE_FOUND"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    REVOKED_NO_POE = "REVOKED_NO_POE"
    REVOKED_CA_NO_POE = "REVOKED_CA_NO_POE"
    OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
    NO_POE = "NO_POE"
    TRY_LATER = "TRY_LATER"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"

    @property
    def indication(self) -> Indication:
        if self in _FAILED:
            return Indication.FAILED
        return Indication.INDETERMINATE

    @property
    def explanation(self) -> tuple[str, str]:
        """(English, 中文) for people reading the report."""
        return _EXPLANATIONS[self]


_FAILED = frozenset(
    {
        SubIndication.FORMAT_FAILURE,
        SubIndication.HASH_FAILURE,
        SubIndication.SIG_CRYPTO_FAILURE,
        SubIndication.REVOKED,
        SubIndication.EXPIRED,
        SubIndication.NOT_YET_VALID,
    }
)

_EXPLANATIONS: dict[SubIndication, tuple[str, str]] = {
    SubIndication.FORMAT_FAILURE: (
        "The input is not a well-formed sealed document of an accepted kind.",
        "输入不是格式正确、可接受的签章文件。",
    ),
    SubIndication.HASH_FAILURE: (
        "The document was changed after it was sealed.",
        "文件在盖章后被改动过。",
    ),
    SubIndication.SIG_CRYPTO_FAILURE: (
        "The signature does not match the seal's certificate.",
        "签名与印章证书不符。",
    ),
    SubIndication.REVOKED: (
        "The seal's certificate was revoked before the document was sealed.",
        "印章证书在盖章前已被撤销。",
    ),
    SubIndication.EXPIRED: (
        "The document was sealed after the seal's certificate expired.",
        "盖章时印章证书已过期。",
    ),
    SubIndication.NOT_YET_VALID: (
        "The document was sealed before the seal's certificate became valid.",
        "盖章时印章证书尚未生效。",
    ),
    SubIndication.SIG_CONSTRAINTS_FAILURE: (
        "The signature does not meet the validation policy (e.g. the document was "
        "modified after sealing in a way the policy does not allow).",
        "签名不符合验证策略（例如盖章后文件有不允许的修改）。",
    ),
    SubIndication.CHAIN_CONSTRAINTS_FAILURE: (
        "A certificate on the path does not meet the PKI's constraints.",
        "证书路径中的证书不符合约束条件。",
    ),
    SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE: (
        "The certificate path could not be checked.",
        "无法校验证书路径。",
    ),
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE: (
        "An algorithm or key size is not accepted by the validation policy.",
        "算法或密钥长度不被验证策略接受。",
    ),
    SubIndication.NO_SIGNING_CERTIFICATE_FOUND: (
        "The seal's certificate is missing.",
        "缺少印章证书。",
    ),
    SubIndication.NO_CERTIFICATE_CHAIN_FOUND: (
        "The seal's certificate does not lead to a trusted root.",
        "印章证书无法链接到受信任的根证书。",
    ),
    SubIndication.REVOKED_NO_POE: (
        "The seal's certificate has been revoked, and nothing proves the document was "
        "sealed before that.",
        "印章证书已被撤销，且无法证明盖章发生在撤销之前。",
    ),
    SubIndication.REVOKED_CA_NO_POE: (
        "A CA certificate on the path has been revoked.",
        "证书路径中的CA证书已被撤销。",
    ),
    SubIndication.OUT_OF_BOUNDS_NO_POE: (
        "A certificate is outside its validity at the validation time, and nothing proves "
        "the document was sealed while it was valid.",
        "验证时证书不在有效期内，且无法证明盖章发生在有效期内。",
    ),
    SubIndication.NO_POE: (
        "The timestamp could not be validated, so the sealing time is not proven.",
        "时间戳无法验证，盖章时间无法证明。",
    ),
    SubIndication.TRY_LATER: (
        "The revocation status is not known now (no current CRL, or the seal is "
        "suspended); try again later.",
        "暂时无法确定撤销状态（无有效CRL或印章已暂停使用），请稍后再试。",
    ),
    SubIndication.SIGNED_DATA_NOT_FOUND: (
        "No seal was found in the document.",
        "文件中未找到印章。",
    ),
}

_PASSED_TEXT = ("The seal is valid.", "印章有效。")


@dataclass(frozen=True)
class Check:
    """One check the verifier made: a stable `name`, whether it passed, and what it saw."""

    name: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class SealIdentity:
    """Who the signing certificate names (subject fields set by `keys.pki`)."""

    seal_id: str | None
    seal_name: str | None
    seal_type: str | None
    department_uscc: str | None
    department_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seal_id": self.seal_id,
            "seal_name": self.seal_name,
            "seal_type": self.seal_type,
            "department_uscc": self.department_uscc,
            "department_name": self.department_name,
        }


@dataclass(frozen=True)
class CertificateSummary:
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256": self.sha256,
        }


def summarise_certificate(cert: x509.Certificate) -> CertificateSummary:
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


def seal_identity(cert: x509.Certificate) -> SealIdentity:
    """Read the seal and department from a seal certificate's subject: O = department
    name, organizationIdentifier = `NTRCN-<USCC>` (EN 319 412-1 §5.1.4), OU = seal type,
    CN = seal name, serialNumber = seal id."""
    subject = cert.subject
    org_id = _attr(subject, NameOID.ORGANIZATION_IDENTIFIER)
    uscc = org_id[len("NTRCN-") :] if org_id and org_id.startswith("NTRCN-") else org_id
    return SealIdentity(
        seal_id=_attr(subject, NameOID.SERIAL_NUMBER),
        seal_name=_attr(subject, NameOID.COMMON_NAME),
        seal_type=_attr(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        department_uscc=uscc,
        department_name=_attr(subject, NameOID.ORGANIZATION_NAME),
    )


@dataclass(frozen=True)
class VerificationReport:
    """What a verification established. Build it with `VerificationReport.passed_report`
    or `.failed_report`; it cannot be changed afterwards."""

    format: str
    indication: Indication
    sub_indication: SubIndication | None
    validation_time: datetime
    checks: tuple[Check, ...]
    seal: SealIdentity | None = None
    signing_time: datetime | None = None
    #: "timestamp" (proof of existence from a TSA) or "claimed" (the signer's own word)
    signing_time_source: str | None = None
    certificate_path: tuple[CertificateSummary, ...] = ()
    timestamp_authority: str | None = None
    document: Any = field(default=None, compare=False)
    #: the document's JSON text exactly as it was sealed (RFC 8785), when the verifier
    #: read it from the signed bytes: a renderer writes it as it is
    document_json: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.indication is Indication.PASSED) != (self.sub_indication is None):
            raise ValueError("PASSED has no sub-indication; the others need one")
        if self.sub_indication is not None and self.sub_indication.indication != self.indication:
            raise ValueError(f"{self.sub_indication} is not a sub-indication of {self.indication}")
        if self.indication is not Indication.PASSED and (
            self.document is not None or self.document_json is not None
        ):
            raise ValueError("only a PASSED report carries the document")

    @property
    def passed(self) -> bool:
        return self.indication is Indication.PASSED

    def passed_again(
        self,
        signing_time: datetime,
        checks: tuple[Check, ...],
        document: Any,
        document_json: bytes | None = None,
    ) -> VerificationReport:
        """Another PASSED report with this one's verifier facts (seal, path, validation
        time) for another document. A batch makes thousands: this skips the dataclass
        machinery, whose checks this report already passed and the copy cannot break."""
        if self.indication is not Indication.PASSED:
            raise ValueError("only a PASSED report is a template for PASSED reports")
        report = object.__new__(VerificationReport)
        fields = report.__dict__
        fields.update(self.__dict__)
        fields["signing_time"] = signing_time
        fields["checks"] = checks
        fields["document"] = document
        fields["document_json"] = document_json
        return report

    @property
    def message(self) -> tuple[str, str]:
        """(English, 中文) one-line explanation of the bottom line."""
        if self.sub_indication is None:
            return _PASSED_TEXT
        return self.sub_indication.explanation

    def to_dict(self) -> dict[str, Any]:
        en, zh = self.message
        return {
            "format": self.format,
            "indication": self.indication.value,
            "sub_indication": self.sub_indication.value if self.sub_indication else None,
            "message": en,
            "message_zh": zh,
            "validation_time": self.validation_time.isoformat(),
            "signing_time": self.signing_time.isoformat() if self.signing_time else None,
            "signing_time_source": self.signing_time_source,
            "seal": self.seal.to_dict() if self.seal else None,
            "certificate_path": [c.to_dict() for c in self.certificate_path],
            "timestamp_authority": self.timestamp_authority,
            "checks": [c.to_dict() for c in self.checks],
            "document": self.document,
        }


#: what `starlette.responses.JSONResponse` writes, so that either may answer
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class ReportEncoder:
    """UTF-8 JSON of reports: the JSON value `report.to_dict()` holds, written byte for
    byte as `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` writes it except
    that a document read from signed bytes is written as those bytes (its RFC 8785 form,
    which differs only in how a few numbers are spelt). Rendered once are what reports share: the
    head (format, bottom line, validation time) and, of PASSED reports, the seal with its
    certificate path, and the checks, which a verifier hands out as the same objects for
    every document of a seal. A PASSED report is then a join of remembered bytes plus its
    signing time and document.

    Fragments are remembered by object identity (holding the object, so that its id is
    not reused) or by value; the memos are bounded. Thread-safe: a race only renders a
    fragment twice."""

    def __init__(self, *, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._heads: dict[tuple[str, Indication, SubIndication | None, datetime], bytes] = {}
        self._shared: dict[int, tuple[object, tuple[object, ...], bytes]] = {}

    def _once(self, obj: object, also: tuple[object, ...], render: Callable[[], str]) -> bytes:
        """The fragment for `obj` together with the values `also` (compared by ==)."""
        entry = self._shared.get(id(obj))
        if entry is not None and entry[0] is obj and entry[1] == also:
            return entry[2]
        data = render().encode()
        if len(self._shared) >= self._max_entries:
            self._shared.clear()
        self._shared[id(obj)] = (obj, also, data)
        return data

    def _head(self, report: VerificationReport) -> bytes:
        key = (report.format, report.indication, report.sub_indication, report.validation_time)
        head = self._heads.get(key)
        if head is None:
            en, zh = report.message
            sub = report.sub_indication.value if report.sub_indication else None
            head = (
                f'{{"format":{_dumps(report.format)},'
                f'"indication":{_dumps(report.indication.value)},"sub_indication":{_dumps(sub)},'
                f'"message":{_dumps(en)},"message_zh":{_dumps(zh)},'
                f'"validation_time":{_dumps(report.validation_time.isoformat())},'
                '"signing_time":'
            ).encode()
            if len(self._heads) >= self._max_entries:
                self._heads.clear()
            self._heads[key] = head
        return head

    @staticmethod
    def _middle(report: VerificationReport) -> str:
        seal = report.seal
        return (
            f',"signing_time_source":{_dumps(report.signing_time_source)}'
            f',"seal":{_dumps(seal.to_dict() if seal else None)}'
            f',"certificate_path":{_dumps([c.to_dict() for c in report.certificate_path])}'
            f',"timestamp_authority":{_dumps(report.timestamp_authority)},"checks":'
        )

    def _pieces(self, report: VerificationReport, out: list[bytes]) -> None:
        checks = report.checks
        if report.passed:
            middle = self._once(
                report.certificate_path,
                (report.seal, report.signing_time_source, report.timestamp_authority),
                lambda: self._middle(report),
            )
            checks_json = self._once(checks, (), lambda: _dumps([c.to_dict() for c in checks]))
        else:  # each failure has its own checks: nothing worth remembering
            middle = self._middle(report).encode()
            checks_json = _dumps([c.to_dict() for c in checks]).encode()
        signing_time = report.signing_time
        out.append(self._head(report))
        out.append(f'"{signing_time.isoformat()}"'.encode() if signing_time else b"null")
        out.append(middle)
        out.append(checks_json)
        out.append(b',"document":')
        document_json = report.document_json
        out.append(document_json if document_json is not None else _dumps(report.document).encode())
        out.append(b"}")

    def encode(self, report: VerificationReport) -> bytes:
        """One report as UTF-8 JSON."""
        out: list[bytes] = []
        self._pieces(report, out)
        return b"".join(out)

    def encode_batch(self, reports: Iterable[VerificationReport]) -> bytes:
        """`{"count", "passed", "reports"}` as UTF-8 JSON, as `POST /api/v1/verify`
        answers a batch."""
        out: list[bytes] = []
        count = passed = 0
        for report in reports:
            out.append(b"," if count else b"")
            self._pieces(report, out)
            count += 1
            passed += report.passed
        return b"".join([f'{{"count":{count},"passed":{passed},"reports":['.encode(), *out, b"]}"])
