"""The evidence log's Merkle tree (RFC 6962 / RFC 9162): a record's leaf, roots, inclusion and consistency
proofs and their checks, the append frontier; and the strict JSON every evidence file is read with."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence


# Columns of an inspections row that make up a record's leaf (all but the local ``seq``).
RECORD_FIELDS: tuple[str, ...] = (
    "record_id", "created_at", "station_id", "order_id", "sku", "unit_code", "reason", "channel", "streamer",
    "brand", "carrier", "grade", "disposition", "review", "lane", "confidence", "model_version", "rules_fired",
    "decision_json", "findings_json", "timings_json", "operator", "overrides", "override_reason",
)


class EvidenceError(RuntimeError):
    """The evidence log, a key or a bundle could not be read or written; the message says what to do."""


# ------------------------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_leaf_data(row: dict, images: Iterable[tuple[str, str]]) -> bytes:
    """The bytes a record contributes to the log: its row (as stored) and its images' content hashes."""
    obj = {k: row[k] for k in RECORD_FIELDS}
    obj["images"] = [{"view": v, "sha256": s} for v, s in images]
    return canonical_json(obj)


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (already hashed with the 0x00 prefix)."""
    if not leaves:
        return EMPTY_ROOT
    frontier = Frontier()
    for h in leaves:
        frontier.push(h)
    return frontier.root()


def subtree_hash(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(subtree_hash(leaves, lo, lo + k), subtree_hash(leaves, lo + k, hi))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]) for leaf ``index`` in the tree of all ``leaves``."""
    if not 0 <= index < len(leaves):
        raise EvidenceError(f"leaf {index} is not in a tree of size {len(leaves)}")

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return path(m, lo, lo + k) + [subtree_hash(leaves, lo + k, hi)]
        return path(m - k, lo + k, hi) + [subtree_hash(leaves, lo, lo + k)]

    return path(index, 0, len(leaves))


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PROOF(m, D[n]): proves the tree of the first ``old_size`` leaves is a prefix of ``leaves``."""
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise EvidenceError(f"cannot prove size {old_size} against a tree of size {n}")
    if old_size in (0, n):
        return []

    def sub(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        size = hi - lo
        if m == size:
            return [] if b else [subtree_hash(leaves, lo, hi)]
        k = _split(size)
        if m <= k:
            return sub(m, lo, lo + k, b) + [subtree_hash(leaves, lo + k, hi)]
        return sub(m - k, lo + k, hi, False) + [subtree_hash(leaves, lo, lo + k)]

    return sub(old_size, 0, n, True)


def verify_inclusion(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= tree_size or index < 0:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
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
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2."""
    if old_size > new_size or old_size < 0:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    proof = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is the first node
        proof = [old_root] + proof
    if not proof:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
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
    return sn == 0 and fr == old_root and sr == new_root


@dataclass(slots=True)
class Frontier:
    """Compact Merkle range: roots of the perfect subtrees (one per set bit of ``size``), left to right.

    Appending is O(log n) and the root is the right fold of the stack, which equals RFC 6962's MTH.
    """

    size: int = 0
    stack: list[bytes] = field(default_factory=list)

    def push(self, h: bytes) -> None:
        self.stack.append(h)
        self.size += 1
        n = self.size
        while n & 1 == 0:  # each trailing zero bit merges two equal perfect subtrees
            right = self.stack.pop()
            left = self.stack.pop()
            self.stack.append(node_hash(left, right))
            n >>= 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        r = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            r = node_hash(left, r)
        return r


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes, what: str, kind=dict):
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EvidenceError(f"{what} is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(obj, kind):
        want = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        want = want.replace("dict", "object").replace("list", "array")
        raise EvidenceError(f"{what} is not a JSON {want}")
    return obj
