"""Tamper-evident evidence log: an RFC 6962 / RFC 9162 Merkle tree over every station record, with signed
tree heads (Ed25519 station key).

- Leaf data is the canonical JSON of a record (every column of its ``inspections`` row but ``seq``, plus its
  image content hashes), so altering any byte of a stored record changes its leaf; images are named by their
  SHA-256, so altering any byte of an image is caught by re-hashing it.
- ``leaf_hash = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``.
- After every append the station signs a tree head (size, root, time, key id). Proofs of inclusion
  (one record in a head) and of consistency (a later head extends an earlier one) follow RFC 9162 2.1.3/2.1.4.

The pure functions here take no I/O; :class:`StationKey` and :class:`EvidenceLog` touch disk and the store.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

# Columns of an inspections row that make up a record's leaf (all but the local ``seq``).
RECORD_FIELDS: tuple[str, ...] = (
    "record_id", "created_at", "station_id", "order_id", "sku", "unit_code", "reason", "channel", "streamer",
    "brand", "carrier", "grade", "disposition", "review", "lane", "confidence", "model_version", "rules_fired",
    "decision_json", "findings_json", "timings_json", "operator", "overrides", "override_reason",
)
HEAD_CONTEXT = b"inspection-station tree head v1\n"


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


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


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
            return path(m, lo, lo + k) + [_mth(leaves, lo + k, hi)]
        return path(m - k, lo + k, hi) + [_mth(leaves, lo, lo + k)]

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
            return [] if b else [_mth(leaves, lo, hi)]
        k = _split(size)
        if m <= k:
            return sub(m, lo, lo + k, b) + [_mth(leaves, lo + k, hi)]
        return sub(m - k, lo + k, hi, False) + [_mth(leaves, lo, lo + k)]

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


# ------------------------------------------------------------------------------------------- keys


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    except ImportError:  # pragma: no cover - the dependency is declared
        raise EvidenceError("the evidence log needs the `cryptography` package: pip install cryptography") from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def public_key_pem(public_key) -> bytes:
    _, ser, _, _ = _crypto()
    return public_key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(public_key) -> str:
    """SHA-256 of the raw 32-byte public key, hex: what a brand compares over the phone; ``key_id`` is its head."""
    _, ser, _, _ = _crypto()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def key_id_of(public_key) -> str:
    return key_fingerprint(public_key)[:16]


def load_public_key(data: bytes):
    _, ser, _, Ed25519PublicKey = _crypto()
    from cryptography.exceptions import UnsupportedAlgorithm

    if not isinstance(data, bytes) or not data.strip():
        raise EvidenceError("not a PEM public key: the file is empty")
    try:
        key = ser.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise EvidenceError(f"not a PEM public key: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError("the public key is not an Ed25519 key")
    return key


class StationKey:
    """The station's Ed25519 signing key, in a PEM file created (0600) on first use. No I/O until ``load``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._private = None

    def load(self) -> "StationKey":
        _, ser, Ed25519PrivateKey, _ = _crypto()
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self.path.parent, 0o700)
                key = Ed25519PrivateKey.generate()
                pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
                tmp = self.path.with_suffix(f".tmp{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, self.path)  # never replaces a key another process created meanwhile
                except FileExistsError:
                    pass
                finally:
                    tmp.unlink(missing_ok=True)
            mode = self.path.stat().st_mode & 0o777
            if mode & 0o077:
                raise EvidenceError(f"station key {self.path} is readable by others (mode {mode:o}): "
                                    f"chmod 600 {self.path}")
            key = ser.load_pem_private_key(self.path.read_bytes(), password=None)
        except OSError as exc:
            raise EvidenceError(f"cannot read or create the station key {self.path}: {exc.strerror}") from None
        except ValueError as exc:
            raise EvidenceError(f"station key {self.path} is corrupt ({exc}); restore it from backup") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EvidenceError(f"station key {self.path} is not an Ed25519 key")
        self._private = key
        return self

    @property
    def private(self):
        if self._private is None:
            self.load()
        return self._private

    @property
    def public(self):
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return public_key_pem(self.public)

    def key_id(self) -> str:
        return key_id_of(self.public)

    def sign_head(self, tree_size: int, root: bytes, signed_at: str) -> "SignedTreeHead":
        kid = self.key_id()
        msg = head_message(tree_size, root.hex(), signed_at, kid)
        sig = self.private.sign(msg)
        return SignedTreeHead(tree_size, root.hex(), signed_at, kid, base64.b64encode(sig).decode())


# ------------------------------------------------------------------------------------------- heads


def head_message(tree_size: int, root_hex: str, signed_at: str, key_id: str) -> bytes:
    return HEAD_CONTEXT + canonical_json({"tree_size": tree_size, "root_hash": root_hex, "signed_at": signed_at,
                                          "key_id": key_id})


def _is_hex(value, length: int | None = None) -> bool:
    if not isinstance(value, str) or (length is not None and len(value) != length) or len(value) % 2:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    tree_size: int
    root_hash: str  # hex
    signed_at: str
    key_id: str
    signature: str  # base64 Ed25519 over head_message(...)

    def to_json(self) -> dict:
        return {"tree_size": self.tree_size, "root_hash": self.root_hash, "signed_at": self.signed_at,
                "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_json(cls, obj) -> "SignedTreeHead":
        """Strict: an object with an integer size >= 0, a 64-hex root and string time, key id and signature."""
        if not isinstance(obj, dict):
            raise EvidenceError(f"not a signed tree head: a JSON object is needed, not {type(obj).__name__}")
        missing = [k for k in ("tree_size", "root_hash", "signed_at", "key_id", "signature") if k not in obj]
        if missing:
            raise EvidenceError(f"not a signed tree head: {', '.join(missing)} missing")
        size = obj["tree_size"]
        if not _is_int(size) or not 0 <= size < 2 ** 63:
            raise EvidenceError(f"not a signed tree head: tree_size {str(size)[:40]!r} is not a size")
        if not _is_hex(obj["root_hash"], 64):
            raise EvidenceError("not a signed tree head: root_hash is not 64 hex digits")
        for k in ("signed_at", "key_id", "signature"):
            if not isinstance(obj[k], str) or len(obj[k]) > 256:
                raise EvidenceError(f"not a signed tree head: {k} is not a short string")
        return cls(size, obj["root_hash"], obj["signed_at"], obj["key_id"], obj["signature"])

    def verify(self, public_key) -> bool:
        InvalidSignature, _, _, _ = _crypto()
        try:
            sig = base64.b64decode(self.signature, validate=True)
            public_key.verify(sig, head_message(self.tree_size, self.root_hash, self.signed_at, self.key_id))
        except (InvalidSignature, ValueError, TypeError):
            return False
        return self.key_id == key_id_of(public_key)


# ------------------------------------------------------------------------------------------- witness heads
#
# A witness is a signed head that someone other than the station's database holds: the last head the platform
# acknowledged (kept by the platform, GET /api/v1/stations/ID/heads, and by the station next to its key, written
# by the sync client after each acknowledged batch), or a head.json out of an evidence bundle. The log must
# extend every witness: fewer leaves than a witness means records were removed (a rollback, or the database
# replaced), a different prefix root means the log was rewritten.

WITNESS_FILE = "platform_head.json"
WITNESS_FORMAT = "inspection-station witness head/1"


@dataclass(frozen=True, slots=True)
class Witness:
    head: SignedTreeHead
    source: str


def witness_path(key_path: Path) -> Path:
    """Where the station keeps the last head the platform acknowledged: next to its key, outside the database."""
    return Path(key_path).parent / WITNESS_FILE


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_witnesses(data: bytes, source: str) -> list[Witness]:
    """Heads out of a witness file: one signed head (a bundle's head.json), the station's witness file
    (``{"head": {...}}``), the platform's ``GET /stations/ID/heads`` answer (``{"heads": [...]}``) or a list."""
    obj = _load_json(data, source, (dict, list))
    if isinstance(obj, dict) and "heads" in obj:
        items = obj["heads"]
    elif isinstance(obj, dict) and "head" in obj:
        items = [obj["head"]]
    elif isinstance(obj, list):
        items = obj
    else:
        items = [obj]
    if not isinstance(items, list) or not items:
        raise EvidenceError(f"{source} holds no signed head")
    if len(items) > 1_000_000:
        raise EvidenceError(f"{source} holds too many heads ({len(items)})")
    return [Witness(SignedTreeHead.from_json(h), source) for h in items]


def load_witness_file(path: Path) -> list[Witness]:
    try:
        size = path.stat().st_size
        if size > 256 * 1024 * 1024:
            raise EvidenceError(f"witness file {path} is too large ({size} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        raise EvidenceError(f"cannot read witness head {path}: {exc.strerror or exc}") from None
    return parse_witnesses(data, str(path))


def save_witness(path: Path, head: SignedTreeHead, acknowledged_by: str = "") -> bool:
    """Keep ``head`` as the station's witness (atomically), unless the file already holds a larger head.
    Best effort: returns False when nothing was written (the platform keeps its own copy)."""
    path = Path(path)
    try:
        if path.exists():
            old = parse_witnesses(path.read_bytes(), str(path))
            if max(w.head.tree_size for w in old) > head.tree_size:
                return False
    except (OSError, EvidenceError):
        pass  # unreadable: replaced by the new head
    body = json.dumps({"format": WITNESS_FORMAT, "acknowledged_at": _utc_now(), "acknowledged_by": acknowledged_by,
                       "head": head.to_json()}, indent=2).encode()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True


# ------------------------------------------------------------------------------------------- the log in the store


def _row_dict(cur: sqlite3.Cursor, row: tuple) -> dict:
    return {d[0]: v for d, v in zip(cur.description, row)}


def record_leaf_from_db(db: sqlite3.Connection, record_id: str) -> bytes:
    cur = db.execute("SELECT * FROM inspections WHERE record_id=?", (record_id,))
    row = cur.fetchone()
    if row is None:
        raise EvidenceError(f"record {record_id} not found")
    images = db.execute("SELECT view, sha256 FROM inspection_images WHERE record_id=? ORDER BY rowid",
                        (record_id,)).fetchall()
    return record_leaf_data(_row_dict(cur, row), images)


class EvidenceLog:
    """The log's tables in the station database. Appends run inside the caller's transaction."""

    def __init__(self, key: StationKey) -> None:
        self.key = key
        self._frontier = Frontier()

    def _sync_frontier(self, db: sqlite3.Connection) -> None:
        n = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM evidence_leaves").fetchone()[0]
        if n != self._frontier.size:  # another process appended: rebuild (O(n), rare)
            f = Frontier()
            for (h,) in db.execute("SELECT leaf_hash FROM evidence_leaves ORDER BY idx"):
                f.push(bytes.fromhex(h))
            self._frontier = f

    def append_in_tx(self, db: sqlite3.Connection, record_ids: Sequence[str], now: str) -> SignedTreeHead:
        """Append records (already inserted in this transaction) and sign the new head."""
        self._sync_frontier(db)
        for rid in record_ids:
            h = leaf_hash(record_leaf_from_db(db, rid))
            db.execute("INSERT INTO evidence_leaves(idx, record_id, leaf_hash) VALUES (?,?,?)",
                       (self._frontier.size, rid, h.hex()))
            self._frontier.push(h)
        head = self.key.sign_head(self._frontier.size, self._frontier.root(), now)
        db.execute("INSERT OR IGNORE INTO tree_heads(tree_size, root_hash, signed_at, key_id, signature) "
                   "VALUES (?,?,?,?,?)", (head.tree_size, head.root_hash, head.signed_at, head.key_id,
                                          head.signature))
        return head

    def invalidate(self) -> None:
        """Forget the cached frontier (after a rolled-back transaction)."""
        self._frontier = Frontier()


def all_leaves(db: sqlite3.Connection) -> list[bytes]:
    return [bytes.fromhex(h) for (h,) in db.execute("SELECT leaf_hash FROM evidence_leaves ORDER BY idx")]


def latest_head(db: sqlite3.Connection) -> SignedTreeHead | None:
    row = db.execute("SELECT tree_size, root_hash, signed_at, key_id, signature FROM tree_heads "
                     "ORDER BY tree_size DESC LIMIT 1").fetchone()
    return SignedTreeHead(*row) if row else None


def head_of_size(db: sqlite3.Connection, size: int) -> SignedTreeHead | None:
    row = db.execute("SELECT tree_size, root_hash, signed_at, key_id, signature FROM tree_heads WHERE tree_size=?",
                     (size,)).fetchone()
    return SignedTreeHead(*row) if row else None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records: int
    images_checked: int
    images_pruned: int
    heads_checked: int
    tree_size: int
    root_hash: str | None
    problems: tuple[str, ...]
    integrity: str = "not run"
    witnesses: tuple[dict, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"ok": self.ok, "records": self.records, "images_checked": self.images_checked,
                "images_pruned": self.images_pruned, "heads_checked": self.heads_checked,
                "tree_size": self.tree_size, "root_hash": self.root_hash, "problems": list(self.problems),
                "integrity": self.integrity, "witnesses": list(self.witnesses), "notes": list(self.notes)}


# The append-only triggers every station database has (migrations 1 and 2); one missing is a sign of tampering.
APPEND_ONLY_TRIGGERS = ("inspections_no_update", "inspections_no_delete", "inspection_images_no_update",
                        "inspection_images_no_delete", "evidence_leaves_no_update", "evidence_leaves_no_delete",
                        "tree_heads_no_update", "tree_heads_no_delete")
NO_WITNESS_NOTE = ("no witness head: a rollback (the newest records removed with their log entries and heads, or "
                   "the database replaced) cannot be ruled out; pass --head FILE with the last head the platform "
                   "acknowledged (GET /api/v1/stations/STATION_ID/heads)")


def _hash_file(path: Path) -> str:
    """SHA-256 of a regular file, streamed (a huge or special file is never read whole)."""
    import stat as stat_mod

    st = os.lstat(path)
    if not stat_mod.S_ISREG(st.st_mode):
        raise OSError(0, "not a regular file")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_store(db: sqlite3.Connection, image_dir: Path, public_key, max_problems: int = 50,
                 witnesses: Sequence[Witness] = (), integrity_check: bool = True,
                 problems_in: Sequence[str] = ()) -> VerifyReport:
    """Check the database's integrity, re-hash every stored record and image, rebuild the tree, check every
    signed head against it, and check that the log extends every ``witnesses`` head. A database that cannot be
    read part-way is a problem (the report fails), never an exception."""
    problems: list[str] = list(problems_in)[:max_problems]
    state = {"records": 0, "checked": 0, "pruned": 0, "heads": 0, "size": 0, "root": None,
             "integrity": "not run", "witnesses": []}

    def problem(msg: str) -> None:
        if len(problems) < max_problems:
            problems.append(msg)

    try:
        _verify_store(db, image_dir, public_key, witnesses, integrity_check, problem, state)
    except (sqlite3.DatabaseError, ValueError, TypeError, OverflowError) as exc:
        problem(f"the station database cannot be read: {exc}: restore it from backup")
    notes = () if state["witnesses"] else (NO_WITNESS_NOTE,)
    return VerifyReport(not problems, state["records"], state["checked"], state["pruned"], state["heads"],
                        state["size"], state["root"], tuple(problems), state["integrity"],
                        tuple(state["witnesses"]), notes)


def _verify_store(db, image_dir, public_key, witnesses, integrity_check, problem, state) -> None:
    if integrity_check:
        rows = [r[0] for r in db.execute("PRAGMA integrity_check(20)")]
        state["integrity"] = "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])
        if rows != ["ok"]:
            problem(f"database integrity check failed: {state['integrity']}")
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            t, rowid, parent, _ = fk[0]
            problem(f"{len(fk)} foreign key violation(s) (first: {t} row {rowid} points to a missing {parent})")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"inspections", "evidence_leaves", "tree_heads", "images", "inspection_images"} <= tables:
        if witnesses:
            w = max(witnesses, key=lambda w: w.head.tree_size)
            problem(f"the database holds no evidence log, but the witness head ({w.source}) covers "
                    f"{w.head.tree_size} record(s): the database was replaced")
            state["witnesses"] += [{"source": w.source, "tree_size": w.head.tree_size, "root_hash": w.head.root_hash,
                                    "signed_at": w.head.signed_at, "ok": w.head.tree_size == 0} for w in witnesses]
            return
        raise EvidenceError("the station database has no evidence log (schema version "
                            f"{db.execute('PRAGMA user_version').fetchone()[0]}): open it with this station once "
                            f"to migrate it, or restore it from backup")
    witnesses = list(witnesses)
    if "sync_state" in tables:  # the copy the sync client keeps of the last head the platform acknowledged
        row = db.execute("SELECT value FROM sync_state WHERE key='platform_head'").fetchone()
        if row is not None:
            try:
                witnesses += parse_witnesses(str(row[0]).encode(), "the sync state's platform_head")
            except EvidenceError as exc:
                problem(f"the last head the platform acknowledged (sync state) is unreadable: {exc}")
    triggers = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    for name in APPEND_ONLY_TRIGGERS:
        if name not in triggers:
            problem(f"the append-only trigger {name} was removed from the database")

    leaves_db = db.execute("SELECT idx, record_id, leaf_hash FROM evidence_leaves ORDER BY idx").fetchall()
    rec_ids = [r[0] for r in db.execute("SELECT record_id FROM inspections ORDER BY seq")]
    state["records"] = len(rec_ids)
    leaf_ids = [r[1] for r in leaves_db]
    if rec_ids != leaf_ids:
        missing = set(rec_ids) - set(leaf_ids)
        extra = set(leaf_ids) - set(rec_ids)
        problem(f"records and log disagree: {len(missing)} record(s) not in the log, {len(extra)} log entr(ies) "
                f"without a record" + ("" if missing or extra else ", order differs"))
    for i, (idx, _, _) in enumerate(leaves_db):
        if idx != i:
            problem(f"log has a gap at leaf {i}")
            break
    # Each record re-hashed from its stored row.
    images_by_record: dict[str, list[tuple[str, str]]] = {}
    for rid, view, sha in db.execute("SELECT record_id, view, sha256 FROM inspection_images ORDER BY rowid"):
        images_by_record.setdefault(rid, []).append((view, sha))
    stored = {rid: h for _, rid, h in leaves_db}
    cur = db.execute("SELECT * FROM inspections ORDER BY seq")
    for row in cur:
        d = _row_dict(cur, row)
        try:
            h = leaf_hash(record_leaf_data(d, images_by_record.get(d["record_id"], []))).hex()
        except (TypeError, ValueError, KeyError) as exc:
            problem(f"record {d.get('record_id')} cannot be hashed: {exc}")
            continue
        if d["record_id"] in stored and stored[d["record_id"]] != h:
            problem(f"record {d['record_id']} (order {d['order_id']}) was altered after it was logged")
    # Every image re-hashed from its file. A file on disk is always re-hashed, pruned or not (marking an image
    # pruned must not hide an edit of its file); an image may be gone only when it is on the platform.
    checked = pruned = 0
    for sha, relpath, uploaded_at, pruned_at in db.execute(
            "SELECT sha256, relpath, uploaded_at, pruned_at FROM images"):
        if not isinstance(sha, str) or not isinstance(relpath, str) or \
                relpath.replace("\\", "/") != f"{sha[:2]}/{sha}.png":
            problem(f"image {sha} has a file name {str(relpath)[:80]!r} outside the store's naming scheme")
            continue
        path = image_dir / relpath
        if pruned_at and not os.path.lexists(path):
            pruned += 1
            if not uploaded_at:
                problem(f"image {sha} is marked pruned but was never uploaded to the platform: its only copy is gone")
            continue
        try:
            digest = _hash_file(path)
        except OSError as exc:
            problem(f"image {sha} cannot be read ({exc.strerror or exc}): {path}")
            continue
        checked += 1
        if digest != sha:
            problem(f"image {sha} was altered: {path} now hashes to {digest}")
    state["checked"], state["pruned"] = checked, pruned
    known = {r[0] for r in db.execute("SELECT sha256 FROM images")}
    for rid, imgs in images_by_record.items():
        for _, sha in imgs:
            if sha not in known:
                problem(f"record {rid} points to image {sha}, which is not in the store")
    # Tree rebuilt from the stored leaves; every signed head must match the prefix it claims.
    heads = db.execute("SELECT tree_size, root_hash, signed_at, key_id, signature FROM tree_heads "
                       "ORDER BY tree_size").fetchall()
    state["heads"] = len(heads)
    head_by_size = {}
    for r in heads:
        try:
            head_by_size[r[0]] = SignedTreeHead.from_json(dict(zip(
                ("tree_size", "root_hash", "signed_at", "key_id", "signature"), r)))
        except EvidenceError as exc:
            problem(f"signed head of size {r[0]} is malformed: {exc}")
    witness_sizes = {w.head.tree_size for w in witnesses}
    prefix_roots: dict[int, str] = {0: EMPTY_ROOT.hex()}
    frontier = Frontier()
    if 0 in head_by_size and head_by_size[0].root_hash != EMPTY_ROOT.hex():
        problem("the signed head of size 0 is not the empty root")
    for _, _, h in leaves_db:
        try:
            raw = bytes.fromhex(h)
            if len(raw) != 32:
                raise ValueError
            frontier.push(raw)
        except (ValueError, TypeError):
            problem(f"leaf {frontier.size} holds a malformed hash")
            frontier.push(b"\x00" * 32)
        head = head_by_size.get(frontier.size)
        if head is not None and head.root_hash != frontier.root().hex():
            problem(f"signed head of size {frontier.size} does not match the log: the log was rewritten")
        if frontier.size in witness_sizes:
            prefix_roots[frontier.size] = frontier.root().hex()
    for head in head_by_size.values():
        if head.tree_size > frontier.size:
            problem(f"signed head of size {head.tree_size} is beyond the log ({frontier.size} leaves): "
                    f"entries were removed")
        if not head.verify(public_key):
            problem(f"signed head of size {head.tree_size} has a bad signature (key {head.key_id})")
    latest = heads[-1] if heads else None
    if frontier.size and (latest is None or latest[0] != frontier.size):
        problem(f"the log's {frontier.size} leaves are not covered by a signed head")
    state["size"] = frontier.size
    state["root"] = frontier.root().hex() if frontier.size else None
    _check_witnesses(witnesses, public_key, frontier.size, prefix_roots, problem, state)


def _check_witnesses(witnesses, public_key, size, prefix_roots, problem, state) -> None:
    for w in witnesses:
        h = w.head
        ok = True
        if not h.verify(public_key):
            ok = False
            problem(f"witness head of size {h.tree_size} ({w.source}) does not verify with this station's key: "
                    f"it was not signed by this station, or the station's key was replaced")
        elif h.tree_size > size:
            ok = False
            problem(f"rollback: the witness head ({w.source}, signed {h.signed_at}) covers {h.tree_size} record(s) "
                    f"but the log holds {size}: records were removed or the database was replaced")
        elif prefix_roots.get(h.tree_size) != h.root_hash:
            ok = False
            problem(f"the log's first {h.tree_size} entries differ from the witness head ({w.source}): "
                    f"the log was rewritten")
        state["witnesses"].append({"source": w.source, "tree_size": h.tree_size, "root_hash": h.root_hash,
                                   "signed_at": h.signed_at, "ok": ok})


def open_readonly(db_path: Path) -> sqlite3.Connection:
    """The station database opened read-only (verify writes nothing, and never seals records it finds)."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise EvidenceError(f"no station database at {db_path}")
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise EvidenceError(f"cannot read the station database {db_path}: {exc}") from None
    return db


def verify_database(db_path: Path, image_dir: Path, public_key, witnesses: Sequence[Witness] = (),
                    problems_in: Sequence[str] = ()) -> VerifyReport:
    db = open_readonly(db_path)
    try:
        return verify_store(db, image_dir, public_key, witnesses=witnesses, problems_in=problems_in)
    finally:
        db.close()


# ------------------------------------------------------------------------------------------- bundles
#
# Format 2: every file of the bundle is listed with its SHA-256 in manifest.json, and manifest.sig is the
# station's Ed25519 signature over MANIFEST_CONTEXT + the exact bytes of manifest.json. The manifest names the
# order, the signed head, and every record of the order among the head's leaves (the station's signed statement
# that the bundle is complete up to that head). records/ are the exact logged bytes (inclusion proofs in
# proofs/ against the head); decision/ files are derived from the records and re-derived by the verifier;
# images/ are named by the SHA-256 the signed records list; annotated/ images are derived and covered by the
# manifest signature.

BUNDLE_FORMAT = "inspection-evidence-bundle/2"
OLD_BUNDLE_FORMATS = ("inspection-evidence-bundle/1",)
MANIFEST_CONTEXT = b"inspection-station evidence bundle v2\n"
SIGNED_PARTS = ("manifest.json", "manifest.sig")


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """What verify-bundle reads at most: a zip bomb or a zip of a million members is refused before it is read."""

    max_file_bytes: int = 2 * 1024 ** 3
    max_members: int = 10_000
    max_member_bytes: int = 64 * 1024 ** 2
    max_total_bytes: int = 1024 ** 3
    max_ratio: int = 100  # uncompressed / compressed, for members over ratio_floor bytes
    ratio_floor: int = 1024 ** 2


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _load_json(data: bytes, what: str, kind=dict):
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EvidenceError(f"{what} is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(obj, kind):
        want = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        want = want.replace("dict", "object").replace("list", "array")
        raise EvidenceError(f"{what} is not a JSON {want}")
    return obj


class _BundleZip:
    """A zip opened with limits: member count, sizes and ratio checked on the central directory, every read
    bounded; duplicate names and encrypted members are refused. Every failure is an EvidenceError."""

    def __init__(self, path: Path, limits: BundleLimits) -> None:
        import zipfile

        self.limits = limits
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise EvidenceError(f"cannot read bundle {path}: {exc.strerror or exc}") from None
        if size > limits.max_file_bytes:
            raise EvidenceError(f"{path} is {size} bytes, more than a bundle may be ({limits.max_file_bytes})")
        try:
            with open(path, "rb") as fh:
                end = zipfile._EndRecData(fh)  # the central directory's entry count, before it is parsed
            if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:
                raise EvidenceError(f"{path} has {end[zipfile._ECD_ENTRIES_TOTAL]} members, more than a bundle "
                                    f"may have ({limits.max_members})")
            self.zf = zipfile.ZipFile(path)
            infos = self.zf.infolist()
        except EvidenceError:
            raise
        except Exception as exc:  # zipfile raises BadZipFile, OSError, ValueError, struct.error, EOFError, ...
            raise EvidenceError(f"{path} is not a readable zip: {exc}") from None
        try:
            self._check(infos)
        except EvidenceError:
            self.zf.close()
            raise
        self.infos = {i.filename: i for i in infos}
        self.names = set(self.infos)

    def _check(self, infos) -> None:
        lim = self.limits
        if len(infos) > lim.max_members:
            raise EvidenceError(f"the bundle has {len(infos)} members, more than a bundle may have ({lim.max_members})")
        seen: set[str] = set()
        total = 0
        for i in infos:
            if i.filename in seen:
                raise EvidenceError(f"the bundle holds {i.filename!r} twice: a zip with duplicate names is ambiguous")
            seen.add(i.filename)
            if i.flag_bits & 0x1:
                raise EvidenceError(f"{i.filename!r} is encrypted: a bundle is never encrypted")
            if i.file_size > lim.max_member_bytes:
                raise EvidenceError(f"{i.filename!r} unpacks to {i.file_size} bytes, more than a bundle member may "
                                    f"({lim.max_member_bytes})")
            if i.file_size > lim.ratio_floor and i.file_size > lim.max_ratio * max(i.compress_size, 1):
                raise EvidenceError(f"{i.filename!r} unpacks {i.file_size // max(i.compress_size, 1)}-fold: "
                                    f"refused as a zip bomb (limit {lim.max_ratio})")
            total += i.file_size
            if total > lim.max_total_bytes:
                raise EvidenceError(f"the bundle unpacks to more than {lim.max_total_bytes} bytes: refused")

    def read(self, name: str) -> bytes:
        info = self.infos.get(name)
        if info is None:
            raise EvidenceError(f"{name} is missing")
        try:
            out = bytearray()
            with self.zf.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    out += chunk
                    if len(out) > info.file_size or len(out) > self.limits.max_member_bytes:
                        raise EvidenceError(f"{name} unpacks to more than it declares: refused")
            return bytes(out)
        except EvidenceError:
            raise
        except Exception as exc:  # CRC errors, truncated data, unknown compression, ...
            raise EvidenceError(f"{name} cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> "_BundleZip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decision_view(rec: dict) -> dict:
    """The human-readable decision file of a record: derived from the signed record only, so a verifier derives
    it again and compares it whole (liability shares and parties, findings, reasons, operator, ...)."""
    def parsed(text, kind):
        if not isinstance(text, str):
            return kind()
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return kind()
        return obj if isinstance(obj, kind) else kind()

    decision = parsed(rec.get("decision_json"), dict)
    findings = parsed(rec.get("findings_json"), list)
    out = {k: rec.get(k) for k in ("record_id", "order_id", "sku", "reason", "created_at", "station_id",
                                   "unit_code", "channel", "streamer", "brand", "carrier", "review", "lane",
                                   "confidence", "model_version")}
    out.update({"grade": decision.get("grade"), "disposition": decision.get("disposition"),
                "rule_ids": decision.get("rules_fired", []), "liability": decision.get("liability", []),
                "reasons": decision.get("reasons", []), "findings": findings, "overrides": rec.get("overrides"),
                "override_reason": rec.get("override_reason"), "operator": rec.get("operator")})
    return out


def _annotate(image, findings: list[dict], view: str):
    import cv2

    out = image.copy()
    for f in findings:
        if not isinstance(f, dict):
            continue
        box = f.get("box_xyxy")
        if f.get("view") != view or not box:
            continue
        try:
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            score = float(f.get("score", 0))
        except (TypeError, ValueError, OverflowError):
            continue
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), 2)
        label = f"{f.get('kind')} {score:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA)
    return out


BUNDLE_README = """\
Evidence bundle of one order, made by an inspection station.

Verify it offline with the station's public key, obtained from the station itself and not from this bundle:
    station key export --out station.pub          (on the station; or the platform: GET /api/v1/stations/ID/heads)
    station verify-bundle THIS.zip --public-key station.pub
Without --public-key the answer is at best "unverified": anyone can sign a bundle with a key of their own.

manifest.json lists every other file with its SHA-256, the order, the signed head (head.json) and every
record of the order among the head's leaves; manifest.sig is the station's Ed25519 signature over
"inspection-station evidence bundle v2\\n" + the bytes of manifest.json. records/*.json are the exact bytes
logged (leaf = SHA-256(0x00||bytes)); proofs/ hold RFC 6962 audit paths to head.json. decision/*.json are
derived from the records and checked against them; images/ are the originals, named by the SHA-256 the signed
records list; annotated/ images are derived (boxes drawn) and covered by the manifest signature.
"""


def build_bundle(db: sqlite3.Connection, image_dir: Path, key: "StationKey", order_id: str, out: Path) -> dict:
    """Write a zip with every record of ``order_id`` (inspection and overrides), its original and annotated
    images, decision files, inclusion proofs against the latest signed head, the public key, and the manifest
    signed with the station's key (format 2)."""
    import cv2
    import numpy as np
    import zipfile

    head = latest_head(db)
    if head is None:
        raise EvidenceError("the evidence log has no signed head yet")
    if head.key_id != key.key_id():
        raise EvidenceError(f"the latest signed head was made with key {head.key_id}, not this station's key "
                            f"{key.key_id()}: run `station verify`")
    rows = db.execute("SELECT i.record_id, l.idx FROM inspections i LEFT JOIN evidence_leaves l "
                      "ON l.record_id = i.record_id WHERE i.order_id=? ORDER BY i.seq", (order_id,)).fetchall()
    if not rows:
        raise EvidenceError(f"no records of order {order_id!r} on this station")
    for rid, idx in rows:
        if idx is None or idx >= head.tree_size:
            raise EvidenceError(f"record {rid} is not yet covered by a signed head")
    rows.sort(key=lambda r: r[1])
    leaves = all_leaves(db)[:head.tree_size]
    if merkle_root(leaves).hex() != head.root_hash:
        raise EvidenceError("the evidence log does not match its latest signed head: run `station verify`")
    files: dict[str, bytes] = {}
    entries = []
    station_id = None
    for rid, idx in rows:
        data = record_leaf_from_db(db, rid)
        if leaf_hash(data) != leaves[idx]:
            raise EvidenceError(f"record {rid} was altered after it was logged: run `station verify`")
        rec = json.loads(data)
        station_id = rec["station_id"]
        files[f"records/{rid}.json"] = data
        files[f"proofs/{rid}.json"] = json.dumps({
            "leaf_index": idx, "tree_size": head.tree_size, "leaf_hash": leaf_hash(data).hex(),
            "audit_path": [p.hex() for p in inclusion_proof(idx, leaves)]}, indent=2).encode()
        files[f"decision/{rid}.json"] = json.dumps(decision_view(rec), indent=2, ensure_ascii=False).encode()
        findings = decision_view(rec)["findings"]
        entry = {"record_id": rid, "leaf_index": idx, "record": f"records/{rid}.json", "proof": f"proofs/{rid}.json",
                 "decision": f"decision/{rid}.json", "images": [], "annotated": [], "missing_images": []}
        for im in rec["images"]:
            row = db.execute("SELECT relpath, pruned_at FROM images WHERE sha256=?", (im["sha256"],)).fetchone()
            raw = None
            if row is not None:
                try:
                    raw = (image_dir / row[0]).read_bytes()
                except OSError:
                    raw = None
            if raw is None:
                if row is not None and not row[1]:
                    raise EvidenceError(f"image {im['sha256']} of record {rid} is missing from the store and was "
                                        f"never pruned: run `station verify`")
                entry["missing_images"].append(im["sha256"])  # pruned: the platform holds it
                continue
            if hashlib.sha256(raw).hexdigest() != im["sha256"]:
                raise EvidenceError(f"image {im['sha256']} of record {rid} was altered on this station: "
                                    f"run `station verify`")
            name = f"images/{im['sha256']}.png"
            files[name] = raw
            entry["images"].append({"view": im["view"], "sha256": im["sha256"], "file": name})
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if img is not None:
                ok, buf = cv2.imencode(".png", _annotate(img, findings, im["view"]))
                aname = f"annotated/{rid}-{im['view']}.png"
                if ok and aname not in files:
                    files[aname] = buf.tobytes()
                    entry["annotated"].append(aname)
        entries.append(entry)
    public_pem = key.public_pem()
    files["head.json"] = json.dumps(head.to_json(), indent=2).encode()
    files["public_key.pem"] = public_pem
    files["README.txt"] = BUNDLE_README.encode()
    manifest = {"format": BUNDLE_FORMAT, "order_id": order_id, "station_id": station_id, "exported_at": _utc_now(),
                "key_id": key.key_id(), "head": "head.json", "signed_head": head.to_json(),
                "public_key": "public_key.pem", "complete_up_to": head.tree_size, "record_count": len(entries),
                "records": entries,
                "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items())}}
    mbytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    sig = base64.b64encode(key.private.sign(MANIFEST_CONTEXT + mbytes)).decode()
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if name.endswith(".png") else None)
            zf.writestr("manifest.json", mbytes)
            zf.writestr("manifest.sig", json.dumps({"signs": "manifest.json", "key_id": key.key_id(),
                                                    "signature": sig}, indent=2))
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"order_id": order_id, "records": len(entries), "tree_size": head.tree_size, "out": str(out),
            "key_id": key.key_id(), "files": len(files) + 2}


def _manifest_structure(m: dict) -> None:
    """Types of a format-2 manifest; a malformed one makes the bundle unusable (EvidenceError)."""
    def bad(what: str):
        raise EvidenceError(f"not an evidence bundle: manifest.json {what}")

    if not isinstance(m.get("order_id"), str):
        bad("has no order_id string")
    if not isinstance(m.get("records"), list):
        bad("has no records array")
    if not isinstance(m.get("files"), dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in m["files"].items()):
        bad("has no files object of name -> SHA-256")
    if not _is_int(m.get("record_count")):
        bad("has no integer record_count")
    for i, e in enumerate(m["records"]):
        if not isinstance(e, dict):
            bad(f"records[{i}] is not an object")
        if not isinstance(e.get("record_id"), str) or not _is_int(e.get("leaf_index")):
            bad(f"records[{i}] needs a record_id string and an integer leaf_index")
        for k in ("record", "proof", "decision"):
            if not isinstance(e.get(k), str):
                bad(f"records[{i}].{k} is not a file name")
        for k in ("images", "annotated", "missing_images"):
            if not isinstance(e.get(k), list):
                bad(f"records[{i}].{k} is not an array")
        for im in e["images"]:
            if not isinstance(im, dict) or not all(isinstance(im.get(k), str) for k in ("view", "sha256", "file")):
                bad(f"records[{i}].images holds an entry without view, sha256 and file")
        if not all(isinstance(a, str) for a in e["annotated"] + e["missing_images"]):
            bad(f"records[{i}] lists a non-string file or hash")


def _parse_proof(data: bytes):
    """(leaf_index, tree_size, audit path) or an error message."""
    try:
        proof = _load_json(data, "the proof")
    except EvidenceError as exc:
        return str(exc)
    idx, size, path = proof.get("leaf_index"), proof.get("tree_size"), proof.get("audit_path")
    if not _is_int(idx) or not _is_int(size):
        return "leaf_index and tree_size must be integers"
    if not isinstance(path, list) or len(path) > 64 or not all(_is_hex(h, 64) for h in path):
        return "audit_path must be a list of at most 64 hashes of 64 hex digits"
    if set(proof) != {"leaf_index", "tree_size", "leaf_hash", "audit_path"} or not _is_hex(proof["leaf_hash"], 64):
        return "a proof holds leaf_index, tree_size, leaf_hash and audit_path, nothing else"
    return idx, size, [bytes.fromhex(h) for h in path], proof["leaf_hash"]


def verify_bundle(path: Path, public_pem: bytes | None = None, limits: BundleLimits = BundleLimits()) -> dict:
    """Check a bundle with no access to the station: the manifest's signature, every file against it, the signed
    head, each record's inclusion, order and completeness, decision files re-derived, image hashes.

    ``status``: "verified" (only with ``public_pem``, a key obtained independently), "unverified" (every check
    passed, but only against the key inside the bundle: anyone can make such a bundle) or "failed".
    ``ok`` is True only for "verified". A bundle that cannot be read at all raises EvidenceError."""
    InvalidSignature, _, _, _ = _crypto()
    path = Path(path)
    problems: list[str] = []

    def problem(msg: str) -> None:
        if len(problems) < 200:
            problems.append(msg)

    with _BundleZip(path, limits) as bz:
        if "manifest.json" not in bz.names:
            raise EvidenceError(f"{path} is not an evidence bundle: it has no manifest.json")
        mbytes = bz.read("manifest.json")
        manifest = _load_json(mbytes, "manifest.json")
        fmt = manifest.get("format")
        if fmt in OLD_BUNDLE_FORMATS:
            return {"ok": False, "status": "failed", "verified": False, "format": fmt,
                    "order_id": manifest.get("order_id") if isinstance(manifest.get("order_id"), str) else None,
                    "records": 0, "images_checked": 0, "files_checked": 0, "tree_size": None, "root_hash": None,
                    "key_id": None, "key_source": "given" if public_pem is not None else "bundled",
                    "problems": [f"bundle format {fmt!r} has no signed manifest: its decision files and its "
                                 f"completeness cannot be checked; export the order again with `station evidence`"]}
        if fmt != BUNDLE_FORMAT:
            raise EvidenceError(f"{path} is not an evidence bundle this station can check (format {str(fmt)[:60]!r})")
        # The key: one given by the caller is trusted; the bundle's own key only shows the bundle is consistent.
        if public_pem is not None:
            key, key_source = load_public_key(public_pem), "given"
        else:
            if "public_key.pem" not in bz.names:
                raise EvidenceError("the bundle holds no public_key.pem and no --public-key was given: nothing to "
                                    "check its signatures with; get the station's key (`station key export` on the "
                                    "station) and pass --public-key")
            key, key_source = load_public_key(bz.read("public_key.pem")), "bundled"
        kid = key_id_of(key)
        # The manifest's signature, over its exact bytes.
        if "manifest.sig" not in bz.names:
            problem("manifest.sig is missing: the manifest is not signed")
        else:
            try:
                sig = _load_json(bz.read("manifest.sig"), "manifest.sig")
                raw_sig = base64.b64decode(sig.get("signature") if isinstance(sig.get("signature"), str) else "",
                                           validate=True)
                key.verify(raw_sig, MANIFEST_CONTEXT + mbytes)
            except (EvidenceError, InvalidSignature, ValueError, TypeError):
                problem(f"the manifest's signature does not verify with the {key_source} key (key {kid}): the "
                        f"manifest was altered or signed by someone else")
        _manifest_structure(manifest)
        order_id = manifest["order_id"]
        head = SignedTreeHead.from_json(manifest.get("signed_head"))
        if not head.verify(key):
            problem(f"signed head (size {head.tree_size}) does not verify with the {key_source} key (key {kid})")
        try:
            if SignedTreeHead.from_json(_load_json(bz.read("head.json"), "head.json")) != head:
                problem("head.json differs from the head the manifest names")
        except EvidenceError as exc:
            problem(f"head.json: {exc}")
        root = bytes.fromhex(head.root_hash)
        # Every file either listed in the signed manifest with its hash, or refused.
        listed: dict[str, str] = manifest["files"]
        content: dict[str, bytes] = {}
        for name in sorted(bz.names - set(SIGNED_PARTS)):
            if name not in listed:
                problem(f"{name} is not covered by the signed manifest")
                continue
            try:
                content[name] = bz.read(name)
            except EvidenceError as exc:
                problem(str(exc))
                continue
            if hashlib.sha256(content[name]).hexdigest() != listed[name]:
                problem(f"{name} was altered: its hash differs from the signed manifest")
        for name in sorted(set(listed) - bz.names):
            problem(f"{name} is listed in the signed manifest but missing from the bundle")
        if key_source == "given" and content.get("public_key.pem") is not None:
            try:
                if key_id_of(load_public_key(content["public_key.pem"])) != kid:
                    problem("public_key.pem in the bundle is not the given key")
            except EvidenceError as exc:
                problem(f"public_key.pem: {exc}")
        # Records: included in the head, about this order, complete, decision files re-derived.
        n_images = 0
        seen: set[str] = set()
        last_idx = -1
        station_ids = set()
        for entry in manifest["records"]:
            rid = entry["record_id"]
            if rid in seen:
                problem(f"record {rid} is listed twice")
                continue
            seen.add(rid)
            if entry["leaf_index"] <= last_idx:
                problem(f"record {rid}: records are not in log order")
            last_idx = max(last_idx, entry["leaf_index"])
            data = content.get(entry["record"])
            if data is None:
                problem(f"record {rid}: {entry['record']} is missing or unreadable")
                continue
            try:
                rec = _load_json(data, entry["record"])
            except EvidenceError as exc:
                problem(f"record {rid}: {exc}")
                continue
            pdata = content.get(entry["proof"])
            parsed = _parse_proof(pdata) if pdata is not None else f"{entry['proof']} is missing or unreadable"
            if isinstance(parsed, str):
                problem(f"record {rid}: not included in the signed head ({parsed})")
            else:
                idx, size, nodes, claimed = parsed
                if size != head.tree_size or idx != entry["leaf_index"] or claimed != leaf_hash(data).hex() or \
                        not verify_inclusion(idx, head.tree_size, leaf_hash(data), nodes, root):
                    problem(f"record {rid}: not included in the signed head (altered record or proof)")
            if rec.get("record_id") != rid:
                problem(f"record {rid}: the signed record names {str(rec.get('record_id'))[:80]}")
            if rec.get("order_id") != order_id:
                problem(f"record {rid} belongs to order {str(rec.get('order_id'))[:80]!r}, not to {order_id!r}")
            station_ids.add(str(rec.get("station_id")))
            over = rec.get("overrides")
            if over is not None and (not isinstance(over, str) or over not in seen):
                problem(f"record {rid} overrides {str(over)[:80]}, which is not in the bundle before it")
            dname = entry["decision"]
            ddata = content.get(dname)
            if ddata is None:
                problem(f"record {rid}: {dname} is missing or unreadable")
            else:
                try:
                    d = _load_json(ddata, dname)
                except EvidenceError as exc:
                    problem(f"record {rid}: {exc}")
                else:
                    want = decision_view(rec)
                    diff = sorted(k for k in set(want) | set(d) if d.get(k, KeyError) != want.get(k, KeyError))
                    if diff:
                        problem(f"record {rid}: {dname} differs from the signed record ({', '.join(diff[:8])})")
            signed = rec.get("images") if isinstance(rec.get("images"), list) else []
            signed_pairs = [(im.get("view"), im.get("sha256")) for im in signed
                            if isinstance(im, dict) and isinstance(im.get("view"), str)
                            and isinstance(im.get("sha256"), str)]
            signed_shas = {s for _, s in signed_pairs}
            bundled_shas = {im["sha256"] for im in entry["images"]} | set(entry["missing_images"])
            for sha in sorted(signed_shas - bundled_shas):
                problem(f"record {rid}: image {sha} of the signed record is neither in the bundle nor listed as "
                        f"pruned")
            for sha in sorted(bundled_shas - signed_shas):
                problem(f"record {rid}: image {sha} is not in the signed record")
            for im in entry["images"]:
                if (im["view"], im["sha256"]) not in signed_pairs:
                    if im["sha256"] in signed_shas:
                        problem(f"record {rid}: image {im['sha256']} is listed under view {im['view']!r}, "
                                f"which the signed record does not give it")
                    continue
                raw = content.get(im["file"])
                if raw is None:
                    problem(f"record {rid}: image file {im['file']} missing")
                    continue
                n_images += 1
                if hashlib.sha256(raw).hexdigest() != im["sha256"]:
                    problem(f"record {rid}: image {im['file']} was altered")
            views = {v for v, _ in signed_pairs}
            for aname in entry["annotated"]:
                if aname not in content:
                    problem(f"record {rid}: annotated image {aname} missing")
                elif not any(aname == f"annotated/{rid}-{v}.png" for v in views):
                    problem(f"record {rid}: {aname} is not an annotated view of this record")
        if manifest["record_count"] != len(manifest["records"]):
            problem(f"the manifest lists {len(manifest['records'])} record(s) but says the order has "
                    f"{manifest['record_count']}: the bundle is incomplete")
        if not manifest["records"]:
            problem("the bundle holds no records")
        if len(station_ids) > 1:
            problem(f"the records come from {len(station_ids)} stations")
        elif station_ids and manifest.get("station_id") not in station_ids:
            problem(f"the manifest names station {str(manifest.get('station_id'))[:80]!r}, the records another")
        for k, want in (("complete_up_to", head.tree_size), ("key_id", head.key_id), ("head", "head.json"),
                        ("public_key", "public_key.pem")):
            if manifest.get(k) != want:
                problem(f"the manifest's {k} is {str(manifest.get(k))[:80]!r}, not {want!r}")
        if not isinstance(manifest.get("exported_at"), str):
            problem("the manifest has no export time")
        known_keys = {"format", "order_id", "station_id", "exported_at", "key_id", "head", "signed_head",
                      "public_key", "complete_up_to", "record_count", "records", "files"}
        for k in sorted(set(manifest) - known_keys)[:5]:
            problem(f"the manifest holds an unknown field {k[:80]!r}")
        entry_keys = {"record_id", "leaf_index", "record", "proof", "decision", "images", "annotated",
                      "missing_images"}
        for e in manifest["records"]:
            for k in sorted(set(e) - entry_keys)[:5]:
                problem(f"record {e['record_id']}: the manifest holds an unknown field {k[:80]!r}")
            for name, want in (("record", "records"), ("proof", "proofs"), ("decision", "decision")):
                if e[name] != f"{want}/{e['record_id']}.json":
                    problem(f"record {e['record_id']}: its {name} file is named {e[name][:80]!r}")
    status = "failed" if problems else ("verified" if key_source == "given" else "unverified")
    return {"ok": status == "verified", "status": status, "verified": status == "verified", "format": fmt,
            "order_id": order_id, "records": len(manifest["records"]), "images_checked": n_images,
            "images_pruned": sum(len(e["missing_images"]) for e in manifest["records"]),
            "files_checked": len(content), "tree_size": head.tree_size, "root_hash": head.root_hash,
            "head_signed_at": head.signed_at, "exported_at": manifest.get("exported_at"),
            "key_id": head.key_id, "key_source": key_source, "problems": problems}


def keep_acknowledged_head(key: StationKey, head, acknowledged_by: str = "") -> bool:
    """The sync client's hook: keep a head the platform acknowledged as the station's witness file (outside the
    database, next to the key), when it is this station's own (its signature checks). Best effort, never raises:
    the platform keeps its copy too."""
    try:
        if not isinstance(head, SignedTreeHead):
            head = SignedTreeHead.from_json(head)
        if not head.verify(key.public):
            return False
    except EvidenceError:
        return False
    return save_witness(witness_path(key.path), head, acknowledged_by)
