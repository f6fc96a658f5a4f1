"""JSON Canonicalization Scheme (JCS, RFC 8785).

Signed JSON is serialised one way only, so that a verifier can recompute the exact bytes
that were signed: object members sorted by their UTF-16 code units (§3.2.3), no
insignificant white space (§3.2.1), strings escaped minimally (§3.2.2.2) and numbers
written as ECMAScript's `Number.prototype.toString` writes them (§3.2.2.3).

Only I-JSON values (RFC 7493) are accepted: no NaN or infinities, no integers beyond what an
IEEE 754 double holds exactly, no lone surrogates, string keys only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kit.errors import InvalidInput

__all__ = [
    "CanonicalisationError",
    "canonical_json",
    "is_canonical",
    "loads_strict",
    "parse_canonical",
]

#: 2^53: above it an integer is not exactly representable as an IEEE 754 double (I-JSON §2.2).
_MAX_SAFE_INT = 2**53

_encode_basestring = json.encoder.encode_basestring


class CanonicalisationError(InvalidInput):
    code = "not_canonicalisable"


def _string(text: str) -> str:
    """RFC 8785 §3.2.2.2: escape `"`, `\\` and C0 controls only; lowercase `\\u00xx`.

    This is exactly what the C encoder behind `json.dumps(..., ensure_ascii=False)` does
    (short escapes for \\b \\t \\n \\f \\r, `\\u00xx` for the other controls, everything
    else verbatim); lone surrogates are caught when the result is encoded as UTF-8."""
    return _encode_basestring(text)


def _number(value: float) -> str:
    """ECMAScript Number::toString (ECMA-262 §7.1.12.1), as RFC 8785 §3.2.2.3 requires.

    Python's `repr` gives the shortest digit string that round-trips (the same digits
    ECMAScript chooses); only the placement of the decimal point and exponent differs.
    """
    if math.isnan(value) or math.isinf(value):
        raise CanonicalisationError("NaN and Infinity are not JSON numbers")
    if value == 0:
        return "0"  # also -0 (§3.2.2.3)
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    # repr gives value = int(int_part + frac_part) × 10^(exp − len(frac_part));
    # ECMA-262 wants value = 0.d1…dk × 10^n with d1 ≠ 0 and dk ≠ 0.
    significant = (int_part + frac_part).lstrip("0")
    n = len(significant) + (int(exp_text) if exp_text else 0) - len(frac_part)
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exponent = n - 1
    exp_sign = "+" if exponent >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{exp_sign}{abs(exponent)}"


def _utf16_key(key: str) -> bytes:
    # §3.2.3: sort by UTF-16 code units, which differs from code-point order for
    # characters beyond the BMP (an emoji sorts before U+FB33).
    return key.encode("utf-16-be", "surrogatepass")


def _serialise(value: Any, out: list[str], depth: int) -> None:
    if depth > 64:
        raise CanonicalisationError("JSON nested deeper than 64 levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise CanonicalisationError("an integer is beyond 2^53 (not I-JSON)")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        items = []
        for key in value:
            if not isinstance(key, str):
                raise CanonicalisationError("object member names must be strings")
            items.append(key)
        items.sort(key=_utf16_key)
        out.append("{")
        for index, key in enumerate(items):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _serialise(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _serialise(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalisationError(f"{type(value).__name__} is not a JSON value")


def _make_plain_dumps() -> Callable[[Any], str]:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)`.

    Without a circular check: `_plain` bounds the depth, so a cycle never gets here. The C
    encoder is made once, not per call as `JSONEncoder.encode` does (half its cost on a
    small object)."""
    encoder = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False
    )
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    try:
        # Arguments as `JSONEncoder.iterencode` passes them (CPython 3.11–3.13).
        iterencode = make(
            None, encoder.default, _encode_basestring, None, ":", ",", True, False, True
        )
    except TypeError:  # no C accelerator, or another signature: the public way
        return encoder.encode

    def dumps(value: Any) -> str:
        if type(value) is str:
            return _encode_basestring(value)
        return "".join(iterencode(value, 0))

    probe = {"b": [1, True, None, "\x01\u00e9"], "a": {}}
    return dumps if dumps(probe) == encoder.encode(probe) else encoder.encode


_PLAIN_DUMPS = _make_plain_dumps()


def _plain(value: Any, depth: int) -> bool:
    """True if Python's C encoder with sorted keys writes `value` exactly as RFC 8785 does.

    It does for exact dicts with ASCII member names (code-point order is UTF-16 order
    there, §3.2.3), lists, tuples, strings (the same minimal escapes, §3.2.2.2), integers
    up to 2^53 (the decimal digits ECMAScript writes), booleans and None, nested no deeper
    than `_serialise` allows. Floats are left out: `repr` and ECMAScript place the decimal
    point and exponent differently (1e21, 1.0). Subclasses are left out too: the C encoder
    and `_serialise` may read an `IntEnum` or a `str` subclass differently.
    """
    kind = type(value)
    if kind is str or value is None or value is True or value is False:
        return True
    if kind is int:
        number: int = value
        return -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT
    if depth >= 64:  # its members would lie deeper than `_serialise` accepts
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _plain(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) is str or _plain(item, depth + 1) for item in value)
    return False


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (dict, list, str, int, float,
    bool or None). Raises `CanonicalisationError` for anything outside I-JSON.

    Values without floats and with ASCII member names (the common case: identifiers,
    flags, counts) are written by the C encoder, which gives the same bytes for them
    (`_plain`); everything else by the definition below."""
    if _plain(value, 0):
        try:
            return _PLAIN_DUMPS(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CanonicalisationError("a string holds a lone surrogate (not I-JSON)") from exc
    return _canonical_json_full(value)


def _canonical_json_full(value: Any) -> bytes:
    out: list[str] = []
    _serialise(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalisationError("a string holds a lone surrogate (not I-JSON)") from exc


def _reject_constant(name: str) -> Any:
    raise CanonicalisationError(f"{name} is not a JSON number")


def _unique_pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in items:
        if key in result:
            raise CanonicalisationError(f"duplicate member name {key!r}")
        result[key] = val
    return result


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_reject_constant)


def loads_strict(data: bytes | str) -> Any:
    """Parse JSON, rejecting NaN/Infinity literals and duplicate member names (I-JSON §2.3)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return _STRICT.decode(text)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, CanonicalisationError):
            raise
        raise CanonicalisationError("not valid JSON", detail=str(exc)) from exc


class _NotFast(Exception):
    """Internal: leave the fast path of `parse_canonical`."""


def _fast_float(text: str) -> float:
    value = float(text)
    # Python's repr and ECMAScript agree on the digits (both shortest round trip) and, for
    # a plain decimal, on the notation, except that repr keeps ".0" on integral values.
    # Exponent forms differ in notation, so they leave the fast path.
    if repr(value) != text or text.endswith(".0") or "e" in text or "E" in text:
        raise _NotFast
    return value


def _fast_int(text: str) -> int:
    value = int(text)
    if abs(value) > _MAX_SAFE_INT:
        raise _NotFast
    return value


_FAST = json.JSONDecoder(
    parse_float=_fast_float, parse_int=_fast_int, parse_constant=_reject_constant
)


_NON_BMP_LEAD = re.compile(rb"[\xf0-\xf4]")
_C_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def parse_canonical(data: bytes) -> Any:
    """Parse `data` and return the JSON value, only if `data` is exactly its canonical form
    (RFC 8785); raise `CanonicalisationError` otherwise.

    Fast path: when every number literal is written as both Python's repr and ECMAScript
    write it (integers up to 2^53, most decimals) and no character lies beyond the BMP,
    Python's C encoder with sorted keys produces exactly the RFC 8785 form (the same
    string escapes; code-point order equals UTF-16 order), so one C round trip decides.
    Anything else takes the full canonicaliser."""
    try:
        text = data.decode("utf-8")
        value = _FAST.decode(text)
    except _NotFast:
        pass
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, CanonicalisationError):
            raise
        raise CanonicalisationError("not valid JSON", detail=str(exc)) from exc
    else:
        if not _NON_BMP_LEAD.search(data) and _C_DUMPS(value) == text:
            return value
    # duplicate names, other spellings, fractions, astral keys: decide exactly
    value = loads_strict(data)
    if canonical_json(value) != data:
        raise CanonicalisationError("not in RFC 8785 canonical form")
    return value


def is_canonical(data: bytes) -> bool:
    """True if `data` is exactly the canonical form of the JSON it holds."""
    try:
        parse_canonical(data)
    except (CanonicalisationError, UnicodeDecodeError):
        return False
    return True
