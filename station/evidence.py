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


def key_id_of(public_key) -> str:
    _, ser, _, _ = _crypto()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(data: bytes):
    _, ser, _, Ed25519PublicKey = _crypto()
    try:
        key = ser.load_pem_public_key(data)
    except ValueError as exc:
        raise EvidenceError(f"not a PEM public key: {exc}") from None
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
    def from_json(cls, obj: dict) -> "SignedTreeHead":
        try:
            return cls(int(obj["tree_size"]), str(obj["root_hash"]), str(obj["signed_at"]), str(obj["key_id"]),
                       str(obj["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"not a signed tree head: {exc}") from None

    def verify(self, public_key) -> bool:
        InvalidSignature, _, _, _ = _crypto()
        try:
            sig = base64.b64decode(self.signature, validate=True)
            public_key.verify(sig, head_message(self.tree_size, self.root_hash, self.signed_at, self.key_id))
        except (InvalidSignature, ValueError):
            return False
        return self.key_id == key_id_of(public_key)


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

    def to_json(self) -> dict:
        return {"ok": self.ok, "records": self.records, "images_checked": self.images_checked,
                "images_pruned": self.images_pruned, "heads_checked": self.heads_checked,
                "tree_size": self.tree_size, "root_hash": self.root_hash, "problems": list(self.problems)}


def verify_store(db: sqlite3.Connection, image_dir: Path, public_key, max_problems: int = 50) -> VerifyReport:
    """Re-hash every stored record and image, rebuild the tree and check every signed head against it."""
    problems: list[str] = []

    def problem(msg: str) -> None:
        if len(problems) < max_problems:
            problems.append(msg)

    leaves_db = db.execute("SELECT idx, record_id, leaf_hash FROM evidence_leaves ORDER BY idx").fetchall()
    records = db.execute("SELECT record_id FROM inspections ORDER BY seq").fetchall()
    rec_ids = [r[0] for r in records]
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
        except (TypeError, ValueError) as exc:
            problem(f"record {d['record_id']} cannot be hashed: {exc}")
            continue
        if d["record_id"] in stored and stored[d["record_id"]] != h:
            problem(f"record {d['record_id']} (order {d['order_id']}) was altered after it was logged")
    # Every image re-hashed from its file.
    checked = pruned = 0
    for sha, relpath, pruned_at in db.execute("SELECT sha256, relpath, pruned_at FROM images"):
        if pruned_at:
            pruned += 1
            continue
        path = image_dir / relpath
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            problem(f"image {sha} cannot be read ({exc.strerror}): {path}")
            continue
        checked += 1
        if digest != sha:
            problem(f"image {sha} was altered: {path} now hashes to {digest}")
    known = {r[0] for r in db.execute("SELECT sha256 FROM images")}
    for rid, imgs in images_by_record.items():
        for _, sha in imgs:
            if sha not in known:
                problem(f"record {rid} points to image {sha}, which is not in the store")
    # Tree rebuilt from the stored leaves; every signed head must match the prefix it claims.
    heads = db.execute("SELECT tree_size, root_hash, signed_at, key_id, signature FROM tree_heads "
                       "ORDER BY tree_size").fetchall()
    head_by_size = {r[0]: SignedTreeHead(*r) for r in heads}
    frontier = Frontier()
    if 0 in head_by_size and head_by_size[0].root_hash != EMPTY_ROOT.hex():
        problem("the signed head of size 0 is not the empty root")
    for _, _, h in leaves_db:
        try:
            frontier.push(bytes.fromhex(h))
        except ValueError:
            problem(f"leaf {frontier.size} holds a malformed hash")
            frontier.push(b"\x00" * 32)
        head = head_by_size.get(frontier.size)
        if head is not None and head.root_hash != frontier.root().hex():
            problem(f"signed head of size {frontier.size} does not match the log: the log was rewritten")
    for head in head_by_size.values():
        if head.tree_size > frontier.size:
            problem(f"signed head of size {head.tree_size} is beyond the log ({frontier.size} leaves): "
                    f"entries were removed")
        if not head.verify(public_key):
            problem(f"signed head of size {head.tree_size} has a bad signature (key {head.key_id})")
    latest = heads[-1] if heads else None
    if frontier.size and (latest is None or latest[0] != frontier.size):
        problem(f"the log's {frontier.size} leaves are not covered by a signed head")
    return VerifyReport(not problems, len(rec_ids), checked, pruned, len(heads), frontier.size,
                        frontier.root().hex() if frontier.size else None, tuple(problems))


# ------------------------------------------------------------------------------------------- bundles

BUNDLE_FORMAT = "inspection-evidence-bundle/1"


def _annotate(image, findings: list[dict], view: str):
    import cv2

    out = image.copy()
    for f in findings:
        box = f.get("box_xyxy")
        if f.get("view") != view or not box:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), 2)
        label = f"{f.get('kind')} {float(f.get('score', 0)):.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA)
    return out


def build_bundle(db: sqlite3.Connection, image_dir: Path, public_pem: bytes, order_id: str, out: Path) -> dict:
    """Write a zip with every record of ``order_id`` (inspection and overrides), its original and annotated
    images, decision JSON with rule ids, inclusion proofs against the latest signed head, and the public key."""
    import cv2
    import numpy as np
    import zipfile

    ids = [r[0] for r in db.execute("SELECT record_id FROM inspections WHERE order_id=? ORDER BY seq", (order_id,))]
    if not ids:
        raise EvidenceError(f"no records of order {order_id!r} on this station")
    head = latest_head(db)
    if head is None:
        raise EvidenceError("the evidence log has no signed head yet")
    leaves = all_leaves(db)[:head.tree_size]
    index_of = {rid: idx for idx, rid in db.execute("SELECT idx, record_id FROM evidence_leaves")}
    manifest: dict = {"format": BUNDLE_FORMAT, "order_id": order_id, "head": "head.json",
                      "public_key": "public_key.pem", "records": []}
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for rid in ids:
            if rid not in index_of or index_of[rid] >= head.tree_size:
                raise EvidenceError(f"record {rid} is not yet covered by a signed head")
            data = record_leaf_from_db(db, rid)
            idx = index_of[rid]
            proof = inclusion_proof(idx, leaves)
            rec = json.loads(data)
            zf.writestr(f"records/{rid}.json", data)
            zf.writestr(f"proofs/{rid}.json", json.dumps({
                "leaf_index": idx, "tree_size": head.tree_size, "leaf_hash": leaf_hash(data).hex(),
                "audit_path": [p.hex() for p in proof]}, indent=2))
            decision = json.loads(rec["decision_json"])
            findings = json.loads(rec["findings_json"])
            zf.writestr(f"decision/{rid}.json", json.dumps({
                "record_id": rid, "order_id": order_id, "sku": rec["sku"], "reason": rec["reason"],
                "grade": decision.get("grade"), "disposition": decision.get("disposition"),
                "rule_ids": decision.get("rules_fired", []), "liability": decision.get("liability", []),
                "reasons": decision.get("reasons", []), "findings": findings, "overrides": rec["overrides"],
                "override_reason": rec["override_reason"], "operator": rec["operator"]},
                indent=2, ensure_ascii=False))
            entry = {"record_id": rid, "record": f"records/{rid}.json", "proof": f"proofs/{rid}.json",
                     "decision": f"decision/{rid}.json", "images": [], "annotated": []}
            for im in rec["images"]:
                row = db.execute("SELECT relpath, pruned_at FROM images WHERE sha256=?", (im["sha256"],)).fetchone()
                if row is None or row[1]:
                    entry.setdefault("missing_images", []).append(im["sha256"])  # pruned: the platform holds it
                    continue
                raw = (image_dir / row[0]).read_bytes()
                name = f"images/{im['sha256']}.png"
                if name not in zf.namelist():
                    zf.writestr(name, raw)
                entry["images"].append({"view": im["view"], "sha256": im["sha256"], "file": name})
                img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
                if img is not None:
                    ok, buf = cv2.imencode(".png", _annotate(img, findings, im["view"]))
                    if ok:
                        aname = f"annotated/{rid}-{im['view']}.png"
                        zf.writestr(aname, buf.tobytes())
                        entry["annotated"].append(aname)
            manifest["records"].append(entry)
        zf.writestr("head.json", json.dumps(head.to_json(), indent=2))
        zf.writestr("public_key.pem", public_pem)
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        zf.writestr("README.txt", "Verify: station verify-bundle THIS.zip --public-key STATION_KEY.pem\n"
                    "records/*.json are the exact bytes logged (leaf = SHA-256(0x00||bytes)); proofs/ hold RFC 6962 "
                    "audit paths to head.json, signed with the station's Ed25519 key. annotated/ images are "
                    "derived (boxes drawn) and not covered by the proof; images/ are the originals, named by "
                    "SHA-256 and listed in the signed records.\n")
    tmp.replace(out)
    return {"order_id": order_id, "records": len(ids), "tree_size": head.tree_size, "out": str(out)}


def verify_bundle(path: Path, public_pem: bytes | None = None) -> dict:
    """Check a bundle with no access to the station: signature, inclusion of each record, image hashes."""
    import zipfile

    problems: list[str] = []
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise EvidenceError(f"{path} is not a readable zip: {exc}") from None
    with zf:
        names = set(zf.namelist())
        try:
            manifest = json.loads(zf.read("manifest.json"))
            head = SignedTreeHead.from_json(json.loads(zf.read(manifest.get("head", "head.json"))))
        except (KeyError, ValueError) as exc:
            raise EvidenceError(f"{path} is not an evidence bundle ({exc})") from None
        key_source = "given" if public_pem is not None else "bundled"
        key = load_public_key(public_pem if public_pem is not None else zf.read("public_key.pem"))
        if not head.verify(key):
            problems.append(f"signed head (size {head.tree_size}) does not verify with the {key_source} key")
        root = bytes.fromhex(head.root_hash)
        n_images = 0
        for entry in manifest.get("records", []):
            rid = entry.get("record_id")
            try:
                data = zf.read(entry["record"])
                proof = json.loads(zf.read(entry["proof"]))
                rec = json.loads(data)
            except (KeyError, ValueError) as exc:
                problems.append(f"record {rid}: missing or unreadable part ({exc})")
                continue
            lh = leaf_hash(data)
            path_nodes = [bytes.fromhex(h) for h in proof.get("audit_path", [])]
            if proof.get("tree_size") != head.tree_size or not verify_inclusion(
                    int(proof.get("leaf_index", -1)), head.tree_size, lh, path_nodes, root):
                problems.append(f"record {rid}: not included in the signed head (altered record or proof)")
            if rec.get("record_id") != rid:
                problems.append(f"record {rid}: the signed record names {rec.get('record_id')}")
            dname = entry.get("decision")
            if dname in names:
                d = json.loads(zf.read(dname))
                signed = json.loads(rec.get("decision_json", "{}"))
                if d.get("rule_ids") != signed.get("rules_fired") or d.get("grade") != signed.get("grade") or \
                        d.get("disposition") != signed.get("disposition"):
                    problems.append(f"record {rid}: {dname} differs from the signed record")
            listed = {im["sha256"] for im in rec.get("images", [])}
            for im in entry.get("images", []):
                if im["sha256"] not in listed:
                    problems.append(f"record {rid}: image {im['sha256']} is not in the signed record")
                    continue
                try:
                    raw = zf.read(im["file"])
                except KeyError:
                    problems.append(f"record {rid}: image file {im['file']} missing")
                    continue
                n_images += 1
                if hashlib.sha256(raw).hexdigest() != im["sha256"]:
                    problems.append(f"record {rid}: image {im['file']} was altered")
        if not manifest.get("records"):
            problems.append("the bundle holds no records")
    return {"ok": not problems, "order_id": manifest.get("order_id"), "records": len(manifest.get("records", [])),
            "images_checked": n_images, "tree_size": head.tree_size, "root_hash": head.root_hash,
            "key_id": head.key_id, "key_source": key_source, "problems": problems}
