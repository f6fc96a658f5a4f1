"""Claims and scopes (OIDC Core §5). `sub` is pairwise per sector (§8.1), an HMAC under a
secret key: never derived from the ID number without one. The real ID number is released
only under the restricted `id_number` scope to a client with a recorded statutory purpose."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from idp.models import Account, Client
from kit.ids import keyed_hash

#: scope → (zh, en) explanation shown on the consent page
SCOPE_TEXT: dict[str, tuple[str, str]] = {
    "openid": ("确认您的身份，完成统一登录", "Confirm who you are, for single sign-on"),
    "profile": ("读取您的姓名", "Read your name"),
    "phone": ("读取您的手机号码", "Read your mobile number"),
    "offline_access": (
        "您退出登录后仍可继续为您办理（可随时撤销）",
        "Keep working for you after you log out (revocable any time)",
    ),
    "id_number": (
        "读取您的公民身份号码（该系统依法定职责使用）",
        "Read your citizen ID number (the system uses it under a statutory duty)",
    ),
    "enterprise": (
        "读取您代理的企业（名称和统一社会信用代码）",
        "Read the enterprises you act for (name and credit code)",
    ),
    "licence:read": ("经您同意后查验您的电子证照", "Check your e-licences with your consent"),
}

#: claim → the scope that releases it
CLAIM_SCOPE = {
    "name": "profile",
    "phone_number": "phone",
    "phone_number_verified": "phone",
    "id_number": "id_number",
    "enterprises": "enterprise",
}

USER_SCOPES = frozenset(SCOPE_TEXT)


def pairwise_sub(key: bytes, sector: str, account_id: str) -> str:
    return keyed_hash(key, f"{sector}|{account_id}")


def parse_claims_request(raw: str | None) -> dict[str, Any] | None:
    """The `claims` request parameter (OIDC Core §5.5), or None. Malformed → ValueError."""
    if not raw:
        return None
    if len(raw) > 4096:
        raise ValueError("claims parameter too large")
    value = json.loads(raw)
    if not isinstance(value, dict) or not set(value) <= {"userinfo", "id_token"}:
        raise ValueError("claims must be an object with userinfo and/or id_token members")
    for member in value.values():
        if member is None:
            continue
        if not isinstance(member, dict):
            raise ValueError("claims members must be objects")
        for request in member.values():  # OIDC Core §5.5.1: null or {essential, value(s)}
            if request is None:
                continue
            if not isinstance(request, dict) or not set(request) <= {
                "essential",
                "value",
                "values",
            }:
                raise ValueError("a claim request is null or an object")
            if not isinstance(request.get("essential", False), bool):
                raise ValueError("essential is a boolean")
            values = request.get("values", [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError("values is a list of strings")
            if "value" in request and not isinstance(request["value"], str):
                raise ValueError("value is a string")
    return value


def scopes_for_claims(claims: dict[str, Any] | None) -> set[str]:
    """Scopes a `claims` request implies, so consent covers them. `id_number` is never
    implied: it must be asked for as a scope."""
    wanted: set[str] = set()
    for member in (claims or {}).values():
        for name in member or {}:
            scope = CLAIM_SCOPE.get(name)
            if scope and scope != "id_number":
                wanted.add(scope)
    return wanted


def user_claims(
    *,
    account: Account,
    client: Client,
    scopes: Iterable[str],
    phone: str | None,
    id_number: str | None,
    enterprises: list[dict[str, str]],
    requested: Iterable[str] = (),
) -> dict[str, Any]:
    """Claims for `scopes` plus individually `requested` claims the consent covers."""
    granted = set(scopes)
    allowed = set(client.scopes)
    out: dict[str, Any] = {}
    want = {c for c, s in CLAIM_SCOPE.items() if s in granted} | {
        c for c in requested if CLAIM_SCOPE.get(c) in granted
    }
    if "name" in want:
        out["name"] = account.name
    if "phone_number" in want and phone:
        out["phone_number"] = phone
        out["phone_number_verified"] = bool(account.verified)
    if (
        "id_number" in want
        and "id_number" in allowed
        and client.statutory_purpose
        and id_number is not None
    ):
        out["id_number"] = id_number
    if "enterprises" in want:
        out["enterprises"] = enterprises
    return out
