"""RFC 8785 (JCS) against the RFC's own vectors (tests/vectors/jcs_rfc8785.json), an
independent implementation, and the I-JSON limits."""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from kit.canonical import (
    CanonicalisationError,
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
