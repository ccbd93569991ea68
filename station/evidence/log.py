"""The evidence log in the station store, and the check of a whole store against it (records, images,
triggers, heads, witnesses)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from station.evidence.merkle import EMPTY_ROOT, EvidenceError, Frontier, leaf_hash, record_leaf_data
from station.evidence.signing import SignedTreeHead, StationKey
from station.evidence.witness import Witness, parse_witnesses


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
