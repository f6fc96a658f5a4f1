"""The public verification page (`GET /verify`, `POST /verify`): paste a sealed JSON
document (compact JWS) or upload a sealed PDF and read the report in plain Chinese (or
English): the bottom line, the department and seal, the signing time and what proves it,
the certificate path and every check, with the seal's stamp drawn.

Plain HTML forms, no script and nothing from elsewhere: the stamp is an SVG `data:` image,
which the page CSP allows and which cannot run script. The POST is CSRF-checked like every
form here and answers with the result page itself (200): it changes nothing, so there is
nothing to redirect after. Verification is that of `POST /api/v1/verify`: offline, against
the province's trust anchors, at the current time. Bad input gets a page saying what is
wrong (400, 413, 415, 503), never a 500.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from keys.pki import PkiError
from signing import jws_seal, pades
from signing.models import Seal
from signing.report import VerificationReport
from signing.seal_image import SEAL_RED, seal_svg
from web.browser import Browser
from web.i18n import Translator
from web.signing_routes import POLICY, SigningState, signing_state

router = APIRouter(include_in_schema=False)

#: What the page accepts: a PDF as the API does (32 MiB), plus room for the multipart
#: framing and the text fields.
MAX_FORM_BYTES = POLICY.max_pdf_bytes + 64 * 1024
#: A text field (a pasted JWS, whose own limit `_submission` applies, so that a long one is
#: told "too large" rather than "unreadable form").
MAX_TEXT_FIELD = 4 * POLICY.max_jws_bytes
#: The sealed JSON shown back on the page; longer documents are cut (the API gives all).
MAX_DOCUMENT_SHOWN = 20_000
BEIJING = timezone(timedelta(hours=8))
_VOID_GREY = "#8C8C8C"

#: The page's texts, (zh-CN, en) as in `web.i18n.TEXT`.
TEXT: dict[str, tuple[str, str]] = {
    "title": ("印章验证", "Verify a seal"),
    "intro": (
        "检查文件上的电子印章是否由本省政务部门加盖、盖章后是否被改动。"
        "粘贴盖章的数据（JWS），或上传盖章的PDF文件。验证使用本省公布的信任锚，"
        "不会访问文件中指向的任何地址。",
        "Check that an electronic seal was applied by a department of this province and "
        "that the document was not changed afterwards. Paste sealed data (JWS) or upload a "
        "sealed PDF. Verification uses the province's published trust anchors and never "
        "follows an address named in the document.",
    ),
    "jws": ("盖章数据（JWS，以 eyJ 开头）", "Sealed data (JWS, starting with eyJ)"),
    "file": ("或上传文件（PDF，最大32 MB）", "Or upload a file (PDF, up to 32 MB)"),
    "submit": ("验证", "Verify"),
    "result": ("验证结果", "Result"),
    "signature_n": ("第{n}个印章", "Seal {n}"),
    "PASSED": ("✓ 印章有效", "✓ The seal is valid"),
    "INDETERMINATE": ("⚠ 无法确认印章有效", "⚠ The seal cannot be confirmed"),
    "FAILED": ("✗ 印章无效", "✗ The seal is not valid"),
    "passed.explanation": (
        "文件自盖章后未被改动；印章证书由本省电子认证体系签发，盖章时有效且未被撤销。",
        "The document is unchanged since it was sealed; the seal's certificate was issued "
        "under the province's PKI, was valid when it sealed and is not revoked.",
    ),
    "reason_code": ("原因代码", "Reason code"),
    "department": ("盖章单位", "Department"),
    "uscc": ("统一社会信用代码", "Unified social credit code"),
    "seal_name": ("印章名称", "Seal"),
    "seal_type": ("印章类型", "Kind of seal"),
    "seal_id": ("印章编号", "Seal ID"),
    "signing_time": ("盖章时间", "Sealed at"),
    "source.timestamp": (
        "由时间戳机构证明",
        "proven by a timestamp authority",
    ),
    "source.claimed": (
        "盖章方声明的时间，无时间戳证明",
        "the time the sealer states, not proven by a timestamp",
    ),
    "tsa": ("时间戳机构", "Timestamp authority"),
    "validation_time": ("验证时间", "Checked at"),
    "beijing": ("北京时间", "Beijing time"),
    "format": ("文件格式", "Format"),
    "format.jws": ("盖章JSON数据（JWS）", "Sealed JSON (JWS)"),
    "format.pdf": ("盖章PDF文件（PAdES）", "Sealed PDF (PAdES)"),
    "path": ("证书路径", "Certificate path"),
    "path.subject": ("证书主体", "Subject"),
    "path.issuer": ("签发者", "Issuer"),
    "path.serial": ("序列号", "Serial number"),
    "path.validity": ("有效期", "Valid"),
    "path.none": ("未能建立到受信任根证书的路径。", "No path to a trusted root was found."),
    "checks": ("检查项目", "Checks"),
    "colon": ("：", ": "),
    "check.passed": ("通过", "passed"),
    "check.failed": ("未通过", "failed"),
    "document": ("盖章内容", "Sealed content"),
    "document.cut": ("（内容较长，仅显示开头部分）", "(long: only the beginning is shown)"),
    "image.alt": ("{name}的印章图像", "The seal of {name}"),
    "image.void": (
        "印章未通过验证，图像仅供识别，不代表盖章有效。",
        "The seal did not pass: the image is for recognition only and proves nothing.",
    ),
    "api": (
        "程序化验证请使用 POST /api/v1/verify；离线验证所需的信任锚见 /api/v1/trust。",
        "For programs: POST /api/v1/verify; trust anchors for offline checks: /api/v1/trust.",
    ),
    "error.empty": ("请粘贴盖章数据或选择一个文件。", "Paste sealed data or choose a file."),
    "error.expired": (
        "页面已失效，请重新打开验证页面后再提交。",
        "The page expired; open the verification page again and resubmit.",
    ),
    "error.large": (
        "文件太大：PDF最大32 MB，盖章数据最大256 KB。",
        "Too large: a PDF may be up to 32 MB, sealed data up to 256 KB.",
    ),
    "error.form": (
        "无法读取提交的表单，请使用本页面的表单提交。",
        "The form could not be read; please submit it from this page.",
    ),
    "error.pki": (
        "验证服务暂不可用（本省信任锚尚未建立），请稍后再试。",
        "Verification is not available now (the province's trust anchors are not set up).",
    ),
}

#: Checks by their stable names (`signing.report.Check.name`), in words.
CHECK_NAMES: dict[str, tuple[str, str]] = {
    "format": ("格式", "Format"),
    "algorithm": ("签名算法", "Signature algorithm"),
    "critical_headers": ("关键扩展", "Critical extensions"),
    "type": ("文件类型", "Document type"),
    "ignored_headers": ("已忽略的外部地址", "Outside addresses ignored"),
    "signing_certificate": ("印章证书", "Seal certificate"),
    "key_identifier": ("密钥标识", "Key identifier"),
    "signature": ("签名", "Signature"),
    "canonical_payload": ("内容规范格式", "Canonical content"),
    "certificate_path": ("证书路径", "Certificate path"),
    "cryptographic_constraints": ("算法与密钥强度", "Algorithms and key sizes"),
    "certificate_constraints": ("证书用途", "Certificate usage"),
    "revocation_information": ("撤销信息", "Revocation information"),
    "revocation_status": ("撤销状态", "Revocation status"),
    "signing_time_in_validity": ("盖章时证书在有效期内", "Certificate valid when sealed"),
    "validity_at_validation_time": ("验证时证书在有效期内", "Certificates valid now"),
    "document_digest": ("文件完整性", "Document integrity"),
    "signing_certificate_attribute": ("签名证书绑定", "Signing certificate bound"),
    "coverage": ("签名覆盖范围", "Signature coverage"),
    "modifications": ("盖章后的改动", "Changes after sealing"),
    "timestamp": ("时间戳", "Timestamp"),
    "timestamp_imprint": ("时间戳摘要", "Timestamp imprint"),
    "timestamp_signature": ("时间戳签名", "Timestamp signature"),
    "timestamp_authority": ("时间戳机构", "Timestamp authority"),
    "seal_present": ("文件中的印章", "Seal in the document"),
}


class _Refused(Exception):
    """The submission cannot be verified; `key` names the message, `status` the code."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


# -- the view of a report ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckView:
    label: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class CertificateView:
    subject: str
    issuer: str
    serial: str
    validity: str
    sha256: str


@dataclass(frozen=True)
class ReportView:
    """One report as the page shows it, in the reader's language."""

    indication: str
    headline: str
    explanation: str
    sub_indication: str | None
    format: str
    department_name: str | None = None
    department_uscc: str | None = None
    seal_name: str | None = None
    seal_type: str | None = None
    seal_id: str | None = None
    signing_time: str | None = None
    signing_time_source: str | None = None
    timestamp_authority: str | None = None
    validation_time: str = ""
    image: str | None = None
    image_alt: str = ""
    image_void: bool = False
    path: list[CertificateView] = field(default_factory=list)
    checks: list[CheckView] = field(default_factory=list)
    document: str | None = None
    document_cut: bool = False


def _texts(t: Translator) -> dict[str, str]:
    return {key: t.pick(pair) for key, pair in TEXT.items()}


def _when(moment: datetime, words: dict[str, str]) -> str:
    """Beijing time, the time every reader of a provincial seal shares."""
    local = moment.astimezone(BEIJING)
    return f"{local:%Y-%m-%d %H:%M:%S} ({words['beijing']}, UTC+8)"


def _stamp(department_name: str, purpose: str, *, valid: bool) -> str:
    """The seal as an SVG `data:` URI; grey when it did not pass, so that a screenshot of
    a failed check never shows the red stamp of a valid one."""
    svg = seal_svg(department_name, purpose, size=200)
    if not valid:
        svg = svg.replace("#{:02X}{:02X}{:02X}".format(*SEAL_RED), _VOID_GREY)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _document_text(document: Any) -> tuple[str | None, bool]:
    if document is None:
        return None, False
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if len(text) > MAX_DOCUMENT_SHOWN:
        return text[:MAX_DOCUMENT_SHOWN], True
    return text, False


def _view(
    report: VerificationReport, t: Translator, words: dict[str, str], ours: dict[str, Seal]
) -> ReportView:
    en, zh = report.message
    identity = report.seal
    image = None
    image_alt = ""
    row = ours.get(identity.seal_id or "") if identity else None
    # The stamp is drawn from our own record of the seal when the certificate names one of
    # ours; a PASSED report's certificate is ours by definition. A stranger's certificate
    # gets no stamp in our style.
    if row is not None:
        image = _stamp(row.department_name, row.purpose, valid=report.passed)
        image_alt = words["image.alt"].format(name=row.department_name)
    elif report.passed and identity and identity.department_name:
        purpose = "" if identity.seal_type in (None, "公章") else identity.seal_type or ""
        image = _stamp(identity.department_name, purpose, valid=True)
        image_alt = words["image.alt"].format(name=identity.department_name)
    source = report.signing_time_source
    document, cut = _document_text(report.document)
    return ReportView(
        indication=report.indication.value,
        headline=words[report.indication.value],
        explanation=words["passed.explanation"] if report.passed else t.pick((zh, en)),
        sub_indication=report.sub_indication.value if report.sub_indication else None,
        format=words.get(f"format.{report.format}", report.format),
        department_name=identity.department_name if identity else None,
        department_uscc=identity.department_uscc if identity else None,
        seal_name=identity.seal_name if identity else None,
        seal_type=identity.seal_type if identity else None,
        seal_id=identity.seal_id if identity else None,
        signing_time=_when(report.signing_time, words) if report.signing_time else None,
        signing_time_source=words.get(f"source.{source}") if source else None,
        timestamp_authority=report.timestamp_authority,
        validation_time=_when(report.validation_time, words),
        image=image,
        image_alt=image_alt,
        image_void=image is not None and not report.passed,
        path=[
            CertificateView(
                subject=c.subject,
                issuer=c.issuer,
                serial=c.serial,
                validity=f"{c.not_before:%Y-%m-%d} – {c.not_after:%Y-%m-%d}",
                sha256=c.sha256,
            )
            for c in report.certificate_path
        ],
        checks=[
            CheckView(
                label=t.pick(CHECK_NAMES.get(c.name, (c.name, c.name))),
                passed=c.passed,
                detail=c.detail,
            )
            for c in report.checks
        ],
        document=document,
        document_cut=cut,
    )


# -- reading the form -------------------------------------------------------------------


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body, refused past `limit` bytes as it streams (a chunked upload has no
    Content-Length to check first)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, "error.large")
        yield chunk


async def _read_form(request: Request) -> tuple[dict[str, str], bytes | None]:
    """The text fields and the uploaded file (if any) of a multipart or urlencoded form."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _Refused(413, "error.large")
    if media == "application/x-www-form-urlencoded":
        raw = b"".join([chunk async for chunk in _limited(request, 4 * MAX_TEXT_FIELD)])
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Refused(400, "error.form") from exc
        return dict(pairs), None
    if media != "multipart/form-data":
        raise _Refused(415, "error.form")
    parser = MultiPartParser(
        request.headers,
        _limited(request, MAX_FORM_BYTES),
        max_files=1,
        max_fields=4,
        max_part_size=MAX_TEXT_FIELD,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _Refused(400, "error.form") from exc
    try:
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        upload = form.get("file")
        data = None
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(MAX_FORM_BYTES + 1)
        return fields, data or None
    finally:
        await form.close()


# -- verifying --------------------------------------------------------------------------


def _verify(
    state: SigningState, text: str | None, pdf: bytes | None
) -> tuple[list[VerificationReport], dict[str, Seal]]:
    anchors = state.anchors()
    now = state.runtime.clock.now()
    if pdf is not None:
        reports = pades.verify_all(pdf, anchors, now, policy=POLICY)
    else:
        reports = [jws_seal.verify(text or "", anchors, now, policy=POLICY)]
    seal_ids = {r.seal.seal_id for r in reports if r.seal and r.seal.seal_id}
    ours: dict[str, Seal] = {}
    if seal_ids:
        with state.runtime.factory() as session:
            rows = session.execute(select(Seal).where(Seal.id.in_(seal_ids))).scalars()
            ours = {row.id: row for row in rows}
    return reports, ours


def _submission(fields: dict[str, str], upload: bytes | None) -> tuple[str | None, bytes | None]:
    """What to verify: an uploaded PDF, an uploaded JWS file, or the pasted text."""
    if upload is not None:
        if pades.looks_like_pdf(upload):
            return None, upload
        if len(upload) > POLICY.max_jws_bytes:
            raise _Refused(413, "error.large")
        # not a PDF: read it as a pasted JWS (the verifier says FORMAT_FAILURE if not)
        return upload.decode("ascii", errors="replace").strip(), None
    text = fields.get("jws", "").strip()
    if not text:
        raise _Refused(400, "error.empty")
    if len(text) > POLICY.max_jws_bytes:
        raise _Refused(413, "error.large")
    return text, None


# -- the page ---------------------------------------------------------------------------


def _render(
    request: Request,
    *,
    status: int = 200,
    error_key: str | None = None,
    reports: list[ReportView] | None = None,
) -> Response:
    browser: Browser = request.app.state.browser
    ui_locales = request.query_params.get("ui_locales")
    t = browser.translator(request, ui_locales)
    words = _texts(t)
    action = "/verify" + (f"?ui_locales={t.locale}" if ui_locales else "")
    return browser.render(
        request,
        "verify.html",
        status=status,
        ui_locales=ui_locales,
        v=words,
        action=action,
        error=words[error_key] if error_key else None,
        reports=reports or [],
    )


@router.get("/verify")
async def verify_form(request: Request) -> Response:
    return _render(request)


@router.post("/verify")
async def verify_submit(request: Request) -> Response:
    browser: Browser = request.app.state.browser
    try:
        fields, upload = await _read_form(request)
        if not browser.csrf_ok(request, fields):
            raise _Refused(400, "error.expired")
        text, pdf = _submission(fields, upload)
        state = signing_state(request)
        try:
            reports, ours = await run_in_threadpool(_verify, state, text, pdf)
        except PkiError as exc:
            raise _Refused(503, "error.pki") from exc
    except _Refused as refused:
        return _render(request, status=refused.status, error_key=refused.key)
    t = browser.translator(request, request.query_params.get("ui_locales"))
    words = _texts(t)
    views = [_view(r, t, words, ours) for r in reports]
    return _render(request, reports=views)


__all__ = ["CHECK_NAMES", "TEXT", "router"]
