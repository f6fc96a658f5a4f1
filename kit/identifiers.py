"""National standard number formats: citizen ID number (GB 11643-1999), unified social
credit code (GB 32100-2015) and e-licence identifier (GB/T 36904).

These are format algorithms, like those of python-stdnum, and carry no business rule.
See `shared/docs/identifiers.md` for the derivations and vectors.
"""

from __future__ import annotations

import datetime as dt

from kit.errors import InvalidInput

__all__ = [
    "IdentifierError",
    "licence_id_check_char",
    "mask_id_number",
    "mask_uscc",
    "normalise_id_number",
    "normalise_uscc",
    "validate_licence_id",
]


class IdentifierError(InvalidInput):
    """A malformed identifier. `reason` names which rule failed; `zh` is for pages."""

    code = "invalid_identifier"

    def __init__(self, reason: str, description: str, zh: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.zh = zh


# GB/T 2260 province-level prefixes (first two digits of the address code).
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
_ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
_ID_CHECK = "10X98765432"


def id_number_check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits."""
    total = sum(int(ch) * w for ch, w in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalise_id_number(value: str) -> str:
    """Validate a 18-character 公民身份号码 and return it upper-cased.

    Checks length, characters, the province part of the address code, that the birth
    date is a calendar date, and the MOD 11-2 check character. Raises `IdentifierError`.
    """
    text = value.strip().upper()
    if len(text) != 18:
        raise IdentifierError("length", "An ID number has 18 characters.", "公民身份号码应为18位。")
    if not text[:17].isdigit() or not (text[17].isdigit() or text[17] == "X"):
        raise IdentifierError(
            "characters",
            "An ID number is 17 digits followed by a digit or X.",
            "公民身份号码应为17位数字加一位数字或X。",
        )
    if int(text[:2]) not in _PROVINCES or text[2:6] == "0000":
        raise IdentifierError(
            "region",
            "The first six digits are not a valid region code.",
            "前六位行政区划代码无效。",
        )
    try:
        born = dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        born = None
    if born is None or born.year < 1850:
        raise IdentifierError(
            "date", "Digits 7-14 are not a valid birth date.", "第7至14位出生日期无效。"
        )
    if id_number_check_char(text[:17]) != text[17]:
        raise IdentifierError(
            "checksum",
            "The check character does not match; please re-check the number.",
            "校验码不符，请核对号码。",
        )
    return text


def mask_id_number(id_number: str) -> str:
    """Mask for display: first 3 and last 2 characters, never the birth date."""
    return f"{id_number[:3]}{'*' * 13}{id_number[-2:]}"


# GB 32100: 31 characters without I, O, S, V, Z.
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def uscc_check_char(body: str) -> str:
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(body, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def organisation_code_check_char(body: str) -> str:
    """GB 11714 check character of an 8-character organisation code body."""
    total = sum(_ALNUM.index(ch) * w for ch, w in zip(body, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def normalise_uscc(value: str) -> str:
    """Validate an 18-character 统一社会信用代码 and return it upper-cased."""
    text = value.strip().upper()
    if len(text) != 18:
        raise IdentifierError(
            "length",
            "A unified social credit code has 18 characters.",
            "统一社会信用代码应为18位。",
        )
    bad = [ch for ch in text if ch not in _USCC_CHARS]
    if bad:
        raise IdentifierError(
            "characters",
            "A unified social credit code uses digits and capital letters except I, O, S, V, Z.",
            "统一社会信用代码只含数字和大写字母（不含I、O、S、V、Z）。",
        )
    if not text[2:8].isdigit():
        raise IdentifierError(
            "region", "Characters 3-8 must be a region code.", "第3至8位应为行政区划代码。"
        )
    if organisation_code_check_char(text[8:16]) != text[16]:
        raise IdentifierError(
            "organisation_checksum",
            "The organisation code (characters 9-17) has a wrong check character.",
            "组织机构代码（第9至17位）校验码不符。",
        )
    if uscc_check_char(text[:17]) != text[17]:
        raise IdentifierError(
            "checksum",
            "The check character does not match; please re-check the code.",
            "校验码不符，请核对代码。",
        )
    return text


def mask_uscc(uscc: str) -> str:
    return f"{uscc[:6]}{'*' * 8}{uscc[-4:]}"


LICENCE_ROOT = "1.2.156.3005.2"


def licence_id_check_char(body: str) -> str:
    """ISO/IEC 7064 MOD 37,36 (GB/T 17710) over type + issuer + serial + version."""
    p = 36
    for ch in body:
        p = (((p + _ALNUM.index(ch)) % 36) or 36) * 2 % 37
    return _ALNUM[(1 - p) % 36]


def validate_licence_id(value: str) -> str:
    """Validate a GB/T 36904 e-licence identifier (root, 21-char type, issuer USCC,
    serial, 3-digit version, check character)."""
    text = value.strip().upper()
    if not text.startswith(LICENCE_ROOT + "."):
        raise IdentifierError(
            "root",
            f"A licence identifier starts with {LICENCE_ROOT}.",
            "电子证照标识应以根代码开头。",
        )
    parts = text[len(LICENCE_ROOT) + 1 :].split(".")
    if len(parts) != 5:
        raise IdentifierError(
            "fields",
            "A licence identifier has type, issuer, serial, version and check fields.",
            "电子证照标识字段数不正确。",
        )
    type_code, issuer, serial, version, check = parts
    if len(type_code) != 21 or len(issuer) != 18 or not serial or len(version) != 3:
        raise IdentifierError("fields", "A field has the wrong length.", "字段长度不正确。")
    if not all(ch in _ALNUM for ch in type_code + issuer + serial + version):
        raise IdentifierError(
            "characters", "Only digits and capital letters.", "只允许数字和大写字母。"
        )
    if licence_id_check_char(type_code + issuer + serial + version) != check:
        raise IdentifierError("checksum", "The check character does not match.", "校验位不符。")
    return text
