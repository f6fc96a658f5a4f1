"""RFC 6962 / RFC 9162 Merkle hashing and proofs, checked against the Certificate
Transparency reference vectors and against a deliberately naive implementation of the
RFC's recursive definitions written here, independent of `audit.merkle`."""

from __future__ import annotations

import hashlib
import random

import pytest

from audit.errors import ProofError
from audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# -- an independent, minimal RFC 6962 §2.1 implementation ---------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data*, straight from RFC 6962 §2.1."""
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _k(len(d))
    return _sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 6962 §2.1.1."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 6962 §2.1.2."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def root_from_path(m: int, n: int, leaf: bytes, p: list[bytes]) -> bytes:
    """Fold an audit path back into a root by the same recursion, from the top."""
    if n == 1:
        assert not p
        return leaf
    k = _k(n)
    if m < k:
        return _sha(b"\x01" + root_from_path(m, k, leaf, p[:-1]) + p[-1])
    return _sha(b"\x01" + p[-1] + root_from_path(m - k, n - k, leaf, p[:-1]))


# -- Certificate Transparency reference vectors (transparency-dev/merkle testonly) --------

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_CONSISTENCY = [
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def test_reference_roots() -> None:
    hashes = [leaf_hash(d) for d in CT_LEAVES]
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for n in range(len(CT_LEAVES) + 1):
        assert root_of(hashes[:n]).hex() == CT_ROOTS[n]
        assert mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]  # and the naive one agrees
        assert MerkleTree(hashes).root(n).hex() == CT_ROOTS[n]


def test_reference_proofs() -> None:
    tree = MerkleTree([leaf_hash(d) for d in CT_LEAVES])
    for index, size, expected in CT_INCLUSION:
        assert [h.hex() for h in tree.inclusion_proof(index, size)] == expected
        verify_inclusion(
            tree.leaf(index),
            index,
            size,
            tree.inclusion_proof(index, size),
            bytes.fromhex(CT_ROOTS[size]),
        )
    for old, new, expected in CT_CONSISTENCY:
        assert [h.hex() for h in tree.consistency_proof(old, new)] == expected
        verify_consistency(
            old,
            new,
            bytes.fromhex(CT_ROOTS[old]),
            bytes.fromhex(CT_ROOTS[new]),
            tree.consistency_proof(old, new),
        )


DATA = [f"event-{i}".encode() for i in range(33)]


def test_every_size_and_proof_matches_the_naive_implementation() -> None:
    hashes = [leaf_hash(d) for d in DATA]
    tree = MerkleTree(hashes)
    compact = CompactRange()
    for n in range(1, len(DATA) + 1):
        compact.append(hashes[n - 1])
        root = mth(DATA[:n])
        assert compact.root() == root == tree.root(n)
        for m in range(n):
            proof = tree.inclusion_proof(m, n)
            assert proof == path(m, DATA[:n])
            assert root_from_path(m, n, hashes[m], proof) == root
            verify_inclusion(hashes[m], m, n, proof, root)
        for m in range(1, n):
            proof = tree.consistency_proof(m, n)
            assert proof == subproof(m, DATA[:n], True)
            verify_consistency(m, n, mth(DATA[:m]), root, proof)


def test_bad_proofs_are_refused() -> None:
    hashes = [leaf_hash(d) for d in DATA[:13]]
    tree = MerkleTree(hashes)
    root = tree.root()
    proof = tree.inclusion_proof(5)
    bad_cases = [
        (hashes[6], 5, 13, proof, root),  # another leaf
        (hashes[5], 6, 13, proof, root),  # another index
        (hashes[5], 5, 8, proof, root),  # another size
        (hashes[5], 5, 13, proof[:-1], root),  # too short
        (hashes[5], 5, 13, [*proof, root], root),  # too long
        (hashes[5], 5, 13, [proof[1], proof[0], *proof[2:]], root),  # reordered
        (hashes[5], 5, 13, proof, leaf_hash(b"other")),  # another root
        (hashes[5], 13, 13, proof, root),  # index out of range
    ]
    for leaf, index, size, p, r in bad_cases:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, p, r)
    old = tree.root(6)
    cproof = tree.consistency_proof(6, 13)
    for args in [
        (6, 13, leaf_hash(b"x"), root, cproof),
        (6, 13, old, leaf_hash(b"x"), cproof),
        (5, 13, old, root, cproof),
        (6, 8, old, root, cproof),  # another size
        (6, 13, old, root, cproof[:-1]),
        (6, 13, old, root, []),
        (6, 6, old, root, []),  # same size, different heads: a fork
        (7, 6, old, root, cproof),
    ]:
        with pytest.raises(ProofError):
            verify_consistency(*args)  # type: ignore[arg-type]
    verify_consistency(6, 6, old, old, [])
    verify_consistency(0, 13, EMPTY_ROOT, root, [])


def test_a_pruned_prefix_still_proves_everything_after_it() -> None:
    rng = random.Random(4)
    for _ in range(40):
        n = rng.randint(2, 70)
        k0 = rng.randint(1, n - 1)
        hashes = [leaf_hash(d) for d in DATA * 3][:n]
        full = MerkleTree(hashes)
        pruned = MerkleTree(hashes[k0:], prefix=full.compact_range(k0))
        assert pruned.root() == full.root() == mth((DATA * 3)[:n])
        for size in range(k0, n + 1):
            assert pruned.root(size) == full.root(size)
            for old in range(k0, size + 1):
                assert pruned.consistency_proof(old, size) == full.consistency_proof(old, size)
        for m in range(k0, n):
            assert pruned.inclusion_proof(m) == full.inclusion_proof(m)
        compact = CompactRange(k0, full.compact_range(k0).hashes)
        compact.extend(hashes[k0:])
        assert compact.root() == full.root()
    # Below the boundary only sizes made of kept subtrees can be recomputed: [4, 5) lies
    # inside the kept [4, 6).
    hashes = [leaf_hash(d) for d in DATA[:10]]
    pruned = MerkleTree(hashes[6:], prefix=MerkleTree(hashes).compact_range(6))
    assert pruned.root(4) == mth(DATA[:4])
    for refused in (
        lambda: pruned.root(5),
        lambda: pruned.inclusion_proof(4),
        lambda: pruned.consistency_proof(5, 10),
    ):
        with pytest.raises(ProofError):
            refused()


def test_compact_range_refuses_a_wrong_shape() -> None:
    with pytest.raises(ProofError):
        CompactRange(13, [leaf_hash(b"a")])
    with pytest.raises(ProofError):
        CompactRange(1, [b"short"])
