"""Compact JWS (RFC 7515 §7.1) produced through a `Signer`, and verification with an
algorithm allowlist fixed by the verifier (RFC 8725 §3.1), never the token's header."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from keys.errors import KeysError
from keys.signer import Signer
from kit.ids import b64url


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_compact(
    signer: Signer,
    payload: Mapping[str, Any],
    *,
    typ: str | None = None,
    extra_header: Mapping[str, Any] | None = None,
) -> str:
    header: dict[str, Any] = {"alg": signer.alg, "kid": signer.kid}
    if typ:
        header["typ"] = typ
    if extra_header:
        header.update(extra_header)
    signing_input = f"{b64url(_json(header))}.{b64url(_json(payload))}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


class InvalidJws(KeysError):
    code = "invalid_token"
    status = 401


def verify_compact(
    token: str, keyset: KeySet, *, algorithms: list[str], typ: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS against `keyset` and return (header, payload).

    The key is chosen by `kid` from the configured set only; `jku`, `x5u` and `jwk`
    headers are ignored (ASVS 9.1.3). `typ` is compared when given (RFC 8725 §3.11).
    """
    if token.count(".") != 2 or len(token) > 16384:
        raise InvalidJws("malformed token")
    try:
        obj = jws.deserialize_compact(token, keyset, algorithms=algorithms)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise InvalidJws("token signature or format is invalid", detail=repr(exc)) from exc
    header = dict(obj.protected)
    if typ is not None and str(header.get("typ", "")).lower() not in (
        typ.lower(),
        f"application/{typ}".lower(),
    ):
        raise InvalidJws("unexpected token type")
    try:
        payload = json.loads(obj.payload)
    except ValueError as exc:
        raise InvalidJws("token payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidJws("token payload is not an object")
    return header, payload
