"""The Merkle tree of RFC 9162 §2.1 (Certificate Transparency 2.0): hashes, proofs, checks.

Pure functions over hashes, no storage: :mod:`consentry.ledger.transparency` keeps the tree of
the ledger's events and uses these to answer for it. Leaves and nodes are domain-separated
(``0x00`` and ``0x01`` prefixes) so that a leaf can never pass for an inner node.

Subtree hashes are asked for by range through a callable, so the same proof code works over a
list in memory (tests, verification) and over the stored nodes of a large log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``subtree(start, end)``: the hash of the leaves ``[start, end)``.
SubtreeHash = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof does not prove what it claims (or is malformed)."""


def leaf_hash(data: bytes) -> bytes:
    """MTH of a single entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The root of a growing tree in O(log n) memory: leaves go in one at a time.

    Keeps the hashes of the complete subtrees along the right edge (one per set bit of the
    size), which is all the tree's root needs.
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash."""
        self._stack.append(leaf)
        self.size += 1
        n = self.size
        while n & 1 == 0:  # merge the complete subtrees this leaf completed
            right = self._stack.pop()
            self._stack[-1] = node_hash(self._stack[-1], right)
            n >>= 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The tree head at the current size."""
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            acc = node_hash(h, acc)
        return acc


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes."""
    compact = CompactRange()
    compact.extend(leaves)
    return compact.root()


def subtree_from_list(leaves: Sequence[bytes]) -> SubtreeHash:
    """A ``subtree`` callable over leaf hashes held in memory (memoised)."""
    cache: dict[tuple[int, int], bytes] = {}

    def subtree(start: int, end: int) -> bytes:
        key = (start, end)
        found = cache.get(key)
        if found is None:
            if end - start == 1:
                found = leaves[start]
            else:
                k = split_point(end - start)
                found = node_hash(subtree(start, start + k), subtree(start + k, end))
            cache[key] = found
        return found

    return subtree


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1: the audit path of leaf ``index``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index - start < k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()  # the RFC lists the path from the leaf up
    return path


def consistency_proof(old_size: int, new_size: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} leaves to {new_size}")
    if old_size == new_size:
        return []
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(subtree(start, end))
            return
        k = split_point(n)
        if m <= k:
            subproof(m, start, start + k, complete)
            proof.append(subtree(start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(subtree(start, start + k))

    subproof(old_size, 0, new_size, True)
    return proof


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2); compare it with a trusted
    one."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
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
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    return r


def verify_consistency(
    old_size: int, old_root: bytes, new_size: int, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the tree of ``new_size`` leaves with
    ``new_root`` extends the one of ``old_size`` with ``old_root`` (RFC 9162 §2.1.4.2)."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} leaves to {new_size}")
    if old_size == new_size:
        _check_same_size(old_root, new_root, proof)
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fr, sr, sn = _fold_consistency(path, old_size - 1, new_size - 1)
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError(
            "the old tree head is not a prefix of the new tree (the log was rewritten)"
        )
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the new tree head")


def _check_same_size(old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Two tree heads of the same size: consistent only as the same head, with no proof."""
    if proof:
        raise ProofError("a proof between equal sizes must be empty")
    if old_root != new_root:
        raise ProofError("the two tree heads have the same size but different roots")


def _fold_consistency(path: list[bytes], fn: int, sn: int) -> tuple[bytes, bytes, int]:
    """RFC 9162 §2.1.4.2's walk up the proof from the last old leaf ``fn`` and the last new
    leaf ``sn``: the old root and the new root it rebuilds, and what is left of ``sn`` (0
    when the proof was exactly as long as the tree is deep)."""
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
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
    return fr, sr, sn
