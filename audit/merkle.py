"""Merkle tree hashing, tree heads and proofs as Certificate Transparency defines them.

RFC 9162 §2.1.1 (unchanged from RFC 6962 §2.1): the hash of an empty tree is SHA-256 of
the empty string; a leaf hashes as SHA-256(0x00 || data); an interior node as
SHA-256(0x01 || left || right); a tree of n > 1 leaves splits at k, the largest power of
two smaller than n. The domain-separation bytes make a leaf impossible to pass off as a node.

Two representations serve two needs:

* `CompactRange` keeps only the perfect subtrees along the right edge of [0, n) — at most
  log2(n) hashes — so a verifier streams a million leaves in constant memory and reads the
  tree head at any size on the way, and the sequencer appends without reading old leaves.
* `MerkleTree` holds every level of [0, n) to produce inclusion (§2.1.3) and consistency
  (§2.1.4) proofs. It may start from a `CompactRange` of a pruned prefix: every node a
  proof for a size at or beyond the prefix needs can still be computed.

Verification follows the RFC 9162 algorithms §2.1.3.2 and §2.1.4.2 step by step and raises
`ProofError` rather than returning a bool (a forgotten `if` cannot accept a bad proof).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from audit.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: MTH({}) = SHA-256() (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)) (RFC 9162 §2.1.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (RFC 9162 §2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 value")


class CompactRange:
    """The right-edge perfect subtrees of a tree of `size` leaves, largest first: one per
    set bit of `size` (e.g. 13 = 8+4+1 → MTH(D[0:8]), MTH(D[8:12]), MTH(D[12:13])).

    Appending a leaf merges equal-sized subtrees, like binary addition; `root()` folds
    them right to left, which is exactly the RFC 9162 split at the largest power of two.
    """

    __slots__ = ("_hashes", "_levels", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ProofError("a tree size cannot be negative")
        levels = [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
        if len(hashes) != len(levels):
            raise ProofError(
                f"a compact range of {size} leaves has {len(levels)} hashes, not {len(hashes)}"
            )
        for value in hashes:
            _check_hash(value, "a compact-range hash")
        self._size = size
        self._levels = levels
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def nodes(self) -> list[tuple[int, int, bytes]]:
        """(start, end, hash) of each subtree, left to right."""
        out, start = [], 0
        for level, value in zip(self._levels, self._hashes, strict=True):
            out.append((start, start + (1 << level), value))
            start += 1 << level
        return out

    def copy(self) -> CompactRange:
        clone = CompactRange()
        clone._size, clone._levels, clone._hashes = (
            self._size,
            list(self._levels),
            list(self._hashes),
        )
        return clone

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (already `leaf_hash`ed)."""
        hashes, levels = self._hashes, self._levels
        value, level = leaf, 0
        while levels and levels[-1] == level:
            value = _sha256(b"\x01" + hashes.pop() + value).digest()
            levels.pop()
            level += 1
        hashes.append(value)
        levels.append(level)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH(D[0:size]) (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        value = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            value = _sha256(b"\x01" + left + value).digest()
        return value


def root_of(leaves: Iterable[bytes]) -> bytes:
    """The tree head over a sequence of leaf hashes, in O(log n) memory."""
    compact = CompactRange()
    compact.extend(leaves)
    return compact.root()


class MerkleTree:
    """All levels of a tree over leaf hashes, for proofs (RFC 9162 §2.1.3.1, §2.1.4.1).

    `prefix` stands in for pruned leaves [0, prefix.size): its subtrees are placed at their
    levels, so any node that covers no pruned leaf except through those subtrees can be
    computed — enough for every proof about sizes ≥ prefix.size.
    """

    def __init__(self, leaves: Sequence[bytes], *, prefix: CompactRange | None = None) -> None:
        first = prefix.size if prefix is not None else 0
        self._first = first
        self._size = first + len(leaves)
        level0: list[bytes | None] = [None] * first
        level0.extend(leaves)
        self._levels: list[list[bytes | None]] = [level0]
        known: dict[tuple[int, int], bytes] = {}
        if prefix is not None:
            for start, end, value in prefix.nodes():
                height = (end - start).bit_length() - 1
                if height == 0:
                    level0[start] = value
                else:
                    known[(height, start >> height)] = value
        width, height = self._size, 0
        while width > 1:
            below = self._levels[height]
            row: list[bytes | None] = [None] * (width // 2)
            for i in range(width // 2):
                fixed = known.get((height + 1, i))
                if fixed is not None:
                    row[i] = fixed
                    continue
                left, right = below[2 * i], below[2 * i + 1]
                if left is not None and right is not None:
                    row[i] = _sha256(b"\x01" + left + right).digest()
            height += 1
            width //= 2
            self._levels.append(row)

    @property
    def size(self) -> int:
        return self._size

    @property
    def first(self) -> int:
        """The first leaf held (leaves before it were pruned)."""
        return self._first

    def leaf(self, index: int) -> bytes:
        value = self._levels[0][index] if 0 <= index < self._size else None
        if value is None:
            raise ProofError(f"leaf {index} is not held (pruned or beyond the tree)")
        return value

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC recursion visits."""
        n = end - start
        if n <= 0 or start < 0 or end > self._size:
            raise ProofError(f"no subtree [{start}, {end}) in a tree of {self._size}")
        if n & (n - 1) == 0 and start % n == 0:
            height = n.bit_length() - 1
            value = self._levels[height][start >> height]
            if value is None:
                raise ProofError(f"subtree [{start}, {end}) lies in the pruned range")
            return value
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self._size if size is None else size
        if size == 0:
            return EMPTY_ROOT
        return self.subtree(0, size)

    def compact_range(self, size: int | None = None) -> CompactRange:
        """The compact range of [0, size), e.g. to keep when pruning below `size`."""
        size = self._size if size is None else size
        hashes, start = [], 0
        for bit in range(size.bit_length() - 1, -1, -1):
            if size >> bit & 1:
                hashes.append(self.subtree(start, start + (1 << bit)))
                start += 1 << bit
        return CompactRange(size, hashes)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(m, D[n]) (RFC 9162 §2.1.3.1), nearest sibling first."""
        size = self._size if size is None else size
        if not 0 <= index < size <= self._size:
            raise ProofError(f"no leaf {index} in a tree of {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, start, start + k), self.subtree(start + k, end)]
        return [*self._path(m - k, start + k, end), self.subtree(start, start + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1); empty when m = n
        or m = 0 (every tree extends the empty one)."""
        new_size = self._size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self._size:
            raise ProofError(f"no consistency proof from {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self.subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree(start, start + k)]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: check that `leaf` (a leaf hash) is leaf `index` of the tree of
    `size` leaves whose head is `root`. Raises `ProofError`."""
    _check_hash(leaf, "the leaf hash")
    _check_hash(root, "the root hash")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "a proof hash")
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: check that the tree of `new_size` leaves with head `new_root`
    extends the tree of `old_size` leaves with head `old_root`. Raises `ProofError`."""
    _check_hash(old_root, "the first root hash")
    _check_hash(new_root, "the second root hash")
    if not 0 <= old_size <= new_size:
        raise ProofError(f"a tree of {new_size} cannot extend one of {old_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("two heads of the same size differ: the log forked")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("the head of the empty tree is not SHA-256 of nothing")
        return
    # 1. An empty path fails.
    if not proof:
        raise ProofError("the consistency proof is empty")
    for p in proof:
        _check_hash(p, "a proof hash")
    path = list(proof)
    # 2. If first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, right-shift both until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the first root")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the second root")
