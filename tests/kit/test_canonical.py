"""RFC 8785 (JCS) against the RFC's own vectors (tests/vectors/jcs_rfc8785.json), an
independent implementation, and the I-JSON limits."""

from __future__ import annotations

import enum
import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from kit.canonical import (
    CanonicalisationError,
    _canonical_json_full,
    _plain,
    canonical_json,
    is_canonical,
    loads_strict,
    parse_canonical,
)

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "jcs_rfc8785.json").read_text())


@pytest.mark.parametrize("case", VECTORS["numbers"], ids=lambda c: c["ieee754"])
def test_appendix_b_numbers(case: dict[str, str]) -> None:
    value = struct.unpack(">d", bytes.fromhex(case["ieee754"]))[0]
    assert canonical_json(value).decode() == case["canonical"]


@pytest.mark.parametrize("case", VECTORS["documents"])
def test_rfc_examples(case: dict[str, str]) -> None:
    assert canonical_json(json.loads(case["input"])).decode("utf-8") == case["canonical"]
    assert is_canonical(case["canonical"].encode("utf-8"))
    assert not is_canonical(case["input"].encode("utf-8"))


def test_agrees_with_an_independent_implementation() -> None:
    rfc8785 = pytest.importorskip("rfc8785")
    rng = random.Random(8785)
    for _ in range(20_000):
        value = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        if math.isnan(value) or math.isinf(value):
            continue
        assert canonical_json(value) == rfc8785.dumps(value), value
    doc: Any = {"z": [1, 2.5, {"ü": None, "a": "\u2028\x1f"}], "\U0001f600": True, "é": -0.0}
    assert canonical_json(doc) == rfc8785.dumps(doc)


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), 2**53 + 1, "\ud800", {1: "x"}, b"bytes", object(), {"a": {1, 2}}],
)
def test_outside_i_json_is_refused(bad: object) -> None:
    with pytest.raises(CanonicalisationError):
        canonical_json(bad)


def test_deep_nesting_is_refused() -> None:
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(CanonicalisationError):
        canonical_json(deep)


def test_strict_parsing() -> None:
    with pytest.raises(CanonicalisationError, match="duplicate"):
        loads_strict(b'{"a":1,"a":2}')
    with pytest.raises(CanonicalisationError):
        loads_strict(b'{"a":NaN}')
    with pytest.raises(CanonicalisationError):
        loads_strict(b"[" * 100_000)
    assert loads_strict('{"a":[1,2]}') == {"a": [1, 2]}
    assert not is_canonical(b"\xff")


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"b":[true,false,null],"c":"\\u001f\xe2\x80\xa8"}',
        b'{"area":89.5,"n":-0.25}',
        b'{"big":9007199254740993}',
        b'{"x":1e-7}',
        b'{"x":100.0}',
        b'{"x":1e+30}',
        b'{"\xf0\x9f\x98\x80":1,"\xef\xac\xb3":2}',
        b'{"\xef\xac\xb3":2,"\xf0\x9f\x98\x80":1}',
        b'{"a":1,"a":1}',
        b'{"b":1,"a":2}',
        b'{"a": 1}',
        b'"\\ud800"',
    ],
)
def test_parse_canonical_fast_path_agrees_with_the_definition(text: bytes) -> None:
    """The C fast path of `parse_canonical` accepts exactly what re-serialising accepts."""
    try:
        expected = canonical_json(loads_strict(text)) == text
    except CanonicalisationError:
        expected = False
    try:
        parse_canonical(text)
        accepted = True
    except CanonicalisationError:
        accepted = False
    assert accepted == expected


# -- the C encoder's fast path gives the definition's bytes ---------------------------------


def _outcome(function: Any, value: Any) -> bytes | type:
    try:
        return function(value)  # type: ignore[no-any-return]
    except CanonicalisationError as exc:
        return type(exc)


class _Name(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 3


_EDGE_STRINGS = [
    "",
    "plain",
    '"quoted" \\ back\\slash /',
    "\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f\x80\x9f",
    "\u2028\u2029\u202e\ufeff",
    "é中文🎉",
    "\U0001f600\ufb33",
    "\ud800",
    "\udfff lone",
]
_EDGE_VALUES: list[Any] = [
    *_EDGE_STRINGS,
    0,
    -0,
    1,
    -1,
    2**53,
    -(2**53),
    2**53 + 1,
    -(2**53) - 1,
    0.0,
    -0.0,
    1.0,
    0.1,
    1e21,
    1e-7,
    float("nan"),
    True,
    False,
    None,
    _Name("sub"),
    _Level.HIGH,
    b"bytes",
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 4 and roll < 0.25:
        keys = [*_EDGE_STRINGS, "a", "b", "aa", "B", "_", "~", "\x7f", "ascii", _Name("k")]
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    if depth < 4 and roll < 0.4:
        items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
        return tuple(items) if rng.random() < 0.2 else items
    return rng.choice(_EDGE_VALUES)


def test_fast_path_gives_the_definitions_bytes_or_error() -> None:
    rng = random.Random(8785)
    plain = 0
    for _ in range(20_000):
        value = _random_value(rng)
        plain += _plain(value, 0)
        assert _outcome(canonical_json, value) == _outcome(_canonical_json_full, value), value
    assert plain > 2000  # the fast path was taken, not only the fallback


def test_fast_path_agrees_with_an_independent_implementation() -> None:
    rfc8785 = pytest.importorskip("rfc8785")
    rng = random.Random(6)
    for _ in range(5_000):
        value = _random_value(rng)
        if not _plain(value, 0):
            continue
        try:
            expected = rfc8785.dumps(value)
        except Exception:  # its own limits (lone surrogates, 2^53 itself)
            continue
        assert canonical_json(value) == expected, value


def test_fast_path_limits() -> None:
    """Depth, member names and types at the fast path's edges go to the definition."""
    deep: Any = "leaf"
    for _ in range(64):
        deep = [deep]
    assert canonical_json(deep) == b"[" * 64 + b'"leaf"' + b"]" * 64
    with pytest.raises(CanonicalisationError):
        canonical_json([deep])
    assert not _plain({"é": 1}, 0) and not _plain({"a": 1.5}, 0)
    assert not _plain(_Level.HIGH, 0) and not _plain({_Name("k"): 1}, 0)
    assert canonical_json({"\U0001f600": 1, "\ufb33": 2}) == canonical_json(
        {"\ufb33": 2, "\U0001f600": 1}
    )
    assert canonical_json({"b": (1, "x"), "a": [None, True]}) == b'{"a":[null,true],"b":[1,"x"]}'
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises((CanonicalisationError, RecursionError)):
        canonical_json(cycle)
