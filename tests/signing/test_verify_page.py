"""The public verification page (`/verify`) over real HTTP against `tongban serve` (SQLite
and PostgreSQL): plain forms without script, the report in Chinese and English, the stamp
drawn red only for a valid seal, and a clear message for hostile input (issue 3)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from kit.canonical import canonical_json
from kit.db import transaction
from kit.ids import b64url
from signing import jws_seal, pades, seals
from signing.tsa import load_tsa
from tests.signing.province import blank_pdf
from tests.signing.test_seal_api import DOC, ensure_pki, new_uscc
from tests.web.live import LiveServer
from web.cli_pki import build_pki

DEPARTMENT = "示范市市场监督管理局"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_IMAGE = re.compile(r'<img src="data:image/svg\+xml;base64,([^"]+)"')


@dataclass
class Sealed:
    seal_id: str
    uscc: str
    jws: str
    tampered: str
    pdf: bytes


@pytest.fixture(scope="module")
def sealed(live: LiveServer) -> Sealed:
    """A seal and documents sealed with it, made in process on the server's database (the
    HTTP sealing API has its own tests)."""
    ensure_pki(live)
    runtime = live.runtime
    pki = build_pki(runtime.settings, runtime.keks)
    uscc = new_uscc()
    with transaction(runtime.factory) as s:
        seal = seals.create_seal(
            s,
            runtime.clock,
            pki,
            department_uscc=uscc,
            department_name=DEPARTMENT,
            name=f"{DEPARTMENT}行政审批专用章",
            seal_type="行政审批专用章",
        )
    with runtime.factory() as s:
        sealer = seals.open_seal(s, pki, seal.id, runtime.clock.now())
        tsa = load_tsa(s, pki, runtime.clock)
    token = jws_seal.seal(DOC, sealer, now=runtime.clock.now())
    header, _, signature = token.split(".")
    forged = b64url(canonical_json({**DOC, "holder": "李四"}))
    return Sealed(
        seal_id=seal.id,
        uscc=uscc,
        jws=token,
        tampered=f"{header}.{forged}.{signature}",
        pdf=pades.seal(blank_pdf(), sealer, tsa, now=runtime.clock.now()),
    )


class Page:
    """A browser without JavaScript: it loads the form, keeps the cookie, posts the form."""

    def __init__(self, live: LiveServer, lang: str | None = None) -> None:
        self.http = httpx.Client(base_url=live.url, timeout=30)
        self.path = f"/verify?ui_locales={lang}" if lang else "/verify"
        self.csrf = ""

    def open(self) -> httpx.Response:
        r = self.http.get(self.path)
        match = _CSRF.search(r.text)
        assert match, r.text[:500]
        self.csrf = match.group(1)
        return r

    def submit(
        self, *, jws: str | None = None, file: bytes | None = None, csrf: bool = True
    ) -> httpx.Response:
        if not self.csrf:
            self.open()
        fields: dict[str, tuple[str | None, bytes | str, str] | tuple[None, str]] = {}
        if csrf:
            fields["csrf_token"] = (None, self.csrf)
        fields["jws"] = (None, jws or "")
        if file is not None:
            fields["file"] = ("document.pdf", file, "application/pdf")
        return self.http.post(self.path, files=fields)


def _stamp(page: httpx.Response) -> str:
    match = _IMAGE.search(page.text)
    assert match, "no seal image"
    return base64.b64decode(match.group(1)).decode()


def test_form_in_both_languages_without_script(live: LiveServer) -> None:
    zh = Page(live).open()
    assert zh.status_code == 200
    assert '<html lang="zh-CN">' in zh.text and "印章验证" in zh.text
    assert 'enctype="multipart/form-data"' in zh.text and 'type="file"' in zh.text
    assert "<script" not in zh.text and "http" not in zh.text.split("<main", 1)[1]
    csp = zh.headers["content-security-policy"]
    assert "img-src 'self' data:" in csp and "script-src 'self'" in csp
    assert zh.headers["x-frame-options"] == "DENY"
    en = Page(live, "en").open()
    assert '<html lang="en">' in en.text and "Verify a seal" in en.text
    assert 'action="/verify?ui_locales=en"' in en.text


def test_valid_jws_in_chinese(live: LiveServer, sealed: Sealed) -> None:
    r = Page(live).submit(jws=sealed.jws)
    assert r.status_code == 200, r.text[:1000]
    text = r.text
    assert 'data-indication="PASSED"' in text and "✓ 印章有效" in text
    assert DEPARTMENT in text and sealed.uscc in text and sealed.seal_id in text
    assert "行政审批专用章" in text
    assert "盖章时间" in text and "北京时间" in text and "盖章方声明的时间" in text
    assert "证书路径" in text and "根CA" in text
    assert "✓ <strong>签名</strong>：通过" in text
    assert "盖章内容" in text and "张三" in text  # the sealed document, shown once verified
    svg = _stamp(r)
    assert "#D6000F" in svg and DEPARTMENT[0] in svg
    assert "图像仅供识别" not in text


def test_valid_jws_in_english(live: LiveServer, sealed: Sealed) -> None:
    r = Page(live, "en").submit(jws=sealed.jws)
    assert r.status_code == 200
    assert "✓ The seal is valid" in r.text and "Department" in r.text
    assert "Beijing time" in r.text and "Certificate path" in r.text
    assert "✓ <strong>Signature</strong>: passed" in r.text


def test_tampered_jws_in_both_languages(live: LiveServer, sealed: Sealed) -> None:
    zh = Page(live).submit(jws=sealed.tampered)
    assert zh.status_code == 200
    assert 'data-indication="FAILED"' in zh.text and "✗ 印章无效" in zh.text
    assert "SIG_CRYPTO_FAILURE" in zh.text and "签名与印章证书不符" in zh.text
    assert "李四" not in zh.text and "盖章内容" not in zh.text  # fail closed
    svg = _stamp(zh)  # our seal, named by the certificate: drawn grey, with a warning
    assert "#D6000F" not in svg and "#8C8C8C" in svg
    assert "图像仅供识别" in zh.text
    en = Page(live, "en").submit(jws=sealed.tampered)
    assert "✗ The seal is not valid" in en.text
    assert "The signature does not match the seal" in en.text


def test_sealed_pdf_upload(live: LiveServer, sealed: Sealed) -> None:
    r = Page(live).submit(file=sealed.pdf)
    assert r.status_code == 200
    assert 'data-indication="PASSED"' in r.text and "盖章PDF文件" in r.text
    assert "由时间戳机构证明" in r.text and "时间戳机构" in r.text
    tampered = sealed.pdf.replace(b"(Licence)", b"(Lic3nce)")
    assert tampered != sealed.pdf
    r = Page(live).submit(file=tampered)
    assert r.status_code == 200 and 'data-indication="PASSED"' not in r.text


def test_hostile_input_gets_a_clear_message(live: LiveServer, sealed: Sealed) -> None:
    page = Page(live)
    for junk in ("not a seal", "eyJhbGciOiJub25lIn0.e30.", "a.b.c", "\u202e" * 100):
        r = page.submit(jws=junk)
        assert r.status_code == 200 and 'data-indication="FAILED"' in r.text, junk
        assert "FORMAT_FAILURE" in r.text
    for upload in (b"%PDF-1.7\n%%EOF\n" + bytes(range(256)) * 40, bytes(range(256)) * 4):
        r = page.submit(file=upload)
        assert r.status_code == 200 and 'data-indication="FAILED"' in r.text
    r = page.submit(jws=sealed.jws, csrf=False)
    assert r.status_code == 400 and "页面已失效" in r.text
    r = httpx.post(f"{live.url}/verify", files={"jws": (None, sealed.jws)})  # no cookie at all
    assert r.status_code == 400
    r = page.submit(jws="   ")
    assert r.status_code == 400 and "请粘贴盖章数据" in r.text
    r = page.submit(jws="x" * 300 * 1024)
    assert r.status_code == 413 and "文件太大" in r.text
    r = page.http.post("/verify", json={"jws": sealed.jws})
    assert r.status_code == 415 and "无法读取提交的表单" in r.text
    r = page.http.post(
        "/verify",
        content=b'--x\r\nContent-Disposition: form-data; name="jws\r\n\r\n',
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code in (200, 400) and "Internal" not in r.text

    def chunks() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        for _ in range(33):
            yield b"0" * (1024 * 1024)

    r = page.http.post(
        "/verify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 413 and "文件太大" in r.text
