"""Database alterations: every way an attacker would change a station's data dir (rows, images, the evidence
log, heads, witness copies, the key), each run through `station verify`."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

from station import evidence as ev
from station.tamper.fixture import ORDER_A, ORDER_B, Fixture, Outcome, invoke_cli


def _sql(*stmts: str, params: tuple = ()) -> Callable[[Path, Fixture], None]:
    def apply(data: Path, fx: Fixture | None = None) -> None:
        db = sqlite3.connect(data / "station.db")
        for s in stmts:
            db.execute(s, params if "?" in s else ())
        db.commit()
        db.close()
    return apply


def _update(column: str, value, rid_index: int = 1) -> Callable[[Path, Fixture], None]:
    def apply(data: Path, fx: Fixture) -> None:
        rid = (fx.record_ids[ORDER_A] + fx.record_ids[ORDER_B])[rid_index]
        db = sqlite3.connect(data / "station.db")
        db.execute("DROP TRIGGER inspections_no_update")
        db.execute(f"UPDATE inspections SET {column} = ? WHERE record_id = ?", (value, rid))
        db.execute("CREATE TRIGGER inspections_no_update BEFORE UPDATE ON inspections BEGIN SELECT RAISE(ABORT, "
                   "'inspection records are append-only: write an override instead'); END")
        db.commit()
        db.close()
    return apply


def _db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "station.db")


def _images(data: Path) -> list[tuple[str, str]]:
    with _db(data) as db:
        return db.execute("SELECT sha256, relpath FROM images ORDER BY created_at, sha256").fetchall()


def _flip(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 1
    path.write_bytes(bytes(b))


def rollback(n: int, drop_state: bool = False, drop_file: bool = False):
    """Delete the newest ``n`` records with their outbox rows, log entries and heads (and the witnesses)."""
    def apply(data: Path, fx: Fixture) -> None:
        db = _db(data)
        db.executescript("DROP TRIGGER inspections_no_delete; DROP TRIGGER evidence_leaves_no_delete; "
                         "DROP TRIGGER tree_heads_no_delete; DROP TRIGGER inspection_images_no_delete;")
        rids = [r[0] for r in db.execute("SELECT record_id FROM evidence_leaves ORDER BY idx DESC LIMIT ?", (n,))]
        size = db.execute("SELECT COUNT(*) FROM evidence_leaves").fetchone()[0] - n
        for rid in rids:
            for t in ("outbox", "evidence_leaves", "inspection_images", "inspections"):
                db.execute(f"DELETE FROM {t} WHERE record_id=?", (rid,))
        db.execute("DELETE FROM tree_heads WHERE tree_size > ?", (size,))
        if drop_state:
            db.execute("DELETE FROM sync_state WHERE key='platform_head'")
        # Put the triggers back: the store looks untouched.
        for name, table, what in (("inspections_no_delete", "inspections", "DELETE"),
                                  ("evidence_leaves_no_delete", "evidence_leaves", "DELETE"),
                                  ("tree_heads_no_delete", "tree_heads", "DELETE"),
                                  ("inspection_images_no_delete", "inspection_images", "DELETE")):
            db.execute(f"CREATE TRIGGER {name} BEFORE {what} ON {table} BEGIN SELECT RAISE(ABORT, 'x'); END")
        db.commit()
        db.close()
        if drop_file:
            ev.witness_path(data / "keys" / "station_ed25519.pem").unlink()
    return apply


def _replace_with_empty(drop_file: bool = False, zero_bytes: bool = False):
    def apply(data: Path, fx: Fixture) -> None:
        from station.records import StationStore

        for suffix in ("", "-wal", "-shm"):
            (data / f"station.db{suffix}").unlink(missing_ok=True)
        if zero_bytes:
            (data / "station.db").write_bytes(b"")
        else:
            StationStore(data / "station.db").open().close()
        if drop_file:
            ev.witness_path(data / "keys" / "station_ed25519.pem").unlink()
    return apply


def corrupt_index(data: Path, fx: Fixture) -> None:
    db = _db(data)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='inspections_order'").fetchone()[0]
    db.close()
    path = data / "station.db"
    raw = bytearray(path.read_bytes())
    off = (root - 1) * page_size
    raw[off + 8:off + page_size] = bytes([0x5A]) * (page_size - 8)  # the page header kept, its cells garbage
    path.write_bytes(bytes(raw))


def forged_record(sign_with_attacker: bool):
    def apply(data: Path, fx: Fixture) -> None:
        db = _db(data)
        cur = db.execute("SELECT * FROM inspections ORDER BY seq LIMIT 1")
        cols = [d[0] for d in cur.description]
        row = dict(zip(cols, cur.fetchone()))
        row.pop("seq")
        row.update(record_id="forged-0001", order_id="FORGED-1", grade="A", disposition="restock")
        db.execute(f"INSERT INTO inspections({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   tuple(row.values()))
        if sign_with_attacker:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            k = Ed25519PrivateKey.generate()
            n = db.execute("SELECT COUNT(*) FROM evidence_leaves").fetchone()[0]
            h = ev.leaf_hash(ev.record_leaf_from_db(db, "forged-0001"))
            db.execute("INSERT INTO evidence_leaves(idx, record_id, leaf_hash) VALUES (?,?,?)",
                       (n, "forged-0001", h.hex()))
            root = ev.merkle_root(ev.all_leaves(db)).hex()
            kid = ev.key_id_of(k.public_key())
            sig = base64.b64encode(k.sign(ev.head_message(n + 1, root, "2030-01-01", kid))).decode()
            db.execute("INSERT INTO tree_heads VALUES (?,?,?,?,?)", (n + 1, root, "2030-01-01", kid, sig))
        db.commit()
        db.close()
    return apply


def _rekey(data: Path, fx: Fixture) -> None:
    """The attacker replaces the station key, alters a record and rebuilds the whole log under the new key."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    key_path = data / "keys" / "station_ed25519.pem"
    key_path.write_bytes(k.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    os.chmod(key_path, 0o600)
    db = _db(data)
    db.executescript("DROP TRIGGER inspections_no_update; DROP TRIGGER evidence_leaves_no_update; "
                     "DROP TRIGGER evidence_leaves_no_delete; DROP TRIGGER tree_heads_no_delete;")
    db.execute("UPDATE inspections SET grade='A' WHERE record_id=?", (fx.record_ids[ORDER_A][0],))
    ids = [r[0] for r in db.execute("SELECT record_id FROM evidence_leaves ORDER BY idx")]
    db.execute("DELETE FROM evidence_leaves")
    db.execute("DELETE FROM tree_heads")
    kid = ev.key_id_of(k.public_key())
    f = ev.Frontier()
    for i, rid in enumerate(ids):
        h = ev.leaf_hash(ev.record_leaf_from_db(db, rid))
        db.execute("INSERT INTO evidence_leaves VALUES (?,?,?)", (i, rid, h.hex()))
        f.push(h)
        root = f.root().hex()
        sig = base64.b64encode(k.sign(ev.head_message(f.size, root, "2030-01-01", kid))).decode()
        db.execute("INSERT INTO tree_heads VALUES (?,?,?,?,?)", (f.size, root, "2030-01-01", kid, sig))
    db.execute("DELETE FROM sync_state WHERE key='platform_head'")
    for name, table, what in (("inspections_no_update", "inspections", "UPDATE"),
                              ("evidence_leaves_no_update", "evidence_leaves", "UPDATE"),
                              ("evidence_leaves_no_delete", "evidence_leaves", "DELETE"),
                              ("tree_heads_no_delete", "tree_heads", "DELETE")):
        db.execute(f"CREATE TRIGGER {name} BEFORE {what} ON {table} BEGIN SELECT RAISE(ABORT, 'x'); END")
    db.commit()
    db.close()


def database_cases(fx: Fixture) -> list[tuple[str, Callable[[Path, Fixture], None], list[str]]]:
    def plain(fn):
        return lambda data, fx: fn(data)

    def img(i=0):
        return lambda data: data / "images" / _images(data)[i][1]

    def pruned_edit(data: Path, fx: Fixture) -> None:
        sha, rel = _images(data)[0]
        with _db(data) as db:
            db.execute("UPDATE images SET pruned_at='2030-01-01', uploaded_at='2030-01-01' WHERE sha256=?", (sha,))
        _flip(data / "images" / rel)

    def pruned_gone(data: Path, fx: Fixture) -> None:
        sha, rel = _images(data)[0]
        with _db(data) as db:
            db.execute("UPDATE images SET pruned_at='2030-01-01' WHERE sha256=?", (sha,))
        (data / "images" / rel).unlink()

    def image_link(data: Path, fx: Fixture) -> None:
        (a_sha, a_rel), (b_sha, b_rel) = _images(data)[:2]
        p = data / "images" / a_rel
        p.unlink()
        p.symlink_to(data / "images" / b_rel)

    def relpath_dev_zero(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.execute("UPDATE images SET relpath='/dev/zero' WHERE sha256=?", (_images(data)[0][0],))

    def image_row_renamed(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.execute("PRAGMA foreign_keys=OFF")
            db.execute("UPDATE images SET sha256=? WHERE sha256=?", ("ab" * 32, _images(data)[0][0]))

    def link_swapped(data: Path, fx: Fixture) -> None:
        shas = [s for s, _ in _images(data)]
        with _db(data) as db:
            db.execute("DROP TRIGGER inspection_images_no_update")
            rid = fx.record_ids[ORDER_A][1]
            old = db.execute("SELECT sha256 FROM inspection_images WHERE record_id=? LIMIT 1", (rid,)).fetchone()[0]
            new = next(s for s in shas if s != old)
            db.execute("UPDATE inspection_images SET sha256=? WHERE record_id=? AND sha256=?", (new, rid, old))

    def leaf_rewritten(data: Path, fx: Fixture) -> None:
        _update("grade", "A", 0)(data, fx)
        with _db(data) as db:
            db.execute("DROP TRIGGER evidence_leaves_no_update")
            rid = fx.record_ids[ORDER_A][0]
            db.execute("UPDATE evidence_leaves SET leaf_hash=? WHERE record_id=?",
                       (ev.leaf_hash(ev.record_leaf_from_db(db, rid)).hex(), rid))

    def leaves_swapped(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.execute("DROP TRIGGER evidence_leaves_no_update")
            db.execute("UPDATE evidence_leaves SET idx = CASE idx WHEN 0 THEN 1000 ELSE idx END")
            db.execute("UPDATE evidence_leaves SET idx = 0 WHERE idx = 1")
            db.execute("UPDATE evidence_leaves SET idx = 1 WHERE idx = 1000")

    def middle_deleted(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.executescript("DROP TRIGGER inspections_no_delete; DROP TRIGGER evidence_leaves_no_delete; "
                             "DROP TRIGGER inspection_images_no_delete;")
            rid = fx.record_ids[ORDER_A][1]
            for t in ("outbox", "evidence_leaves", "inspection_images", "inspections"):
                db.execute(f"DELETE FROM {t} WHERE record_id=?", (rid,))

    def witness_garbage(data: Path, fx: Fixture) -> None:
        ev.witness_path(data / "keys" / "station_ed25519.pem").write_text("{not json")

    def truncate(data: Path, fx: Fixture) -> None:
        p = data / "station.db"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def garbage(data: Path, fx: Fixture) -> None:
        (data / "station.db").write_bytes(os.urandom(64 * 1024))

    heads = ["--head", str(fx.platform_heads)]
    return [
        ("inspection grade", _update("grade", "A"), []),
        ("inspection disposition", _update("disposition", "restock"), []),
        ("inspection confidence", _update("confidence", 0.99), []),
        ("inspection decision_json", _update("decision_json", '{"grade": "A"}'), []),
        ("inspection findings_json", _update("findings_json", "[]"), []),
        ("inspection created_at", _update("created_at", "2020-01-01T00:00:00.000+00:00"), []),
        ("inspection operator", _update("operator", "someone-else"), []),
        ("inspection streamer", _update("streamer", "streamer-2"), []),
        ("inspection order id", _update("order_id", ORDER_B), []),
        ("inspection sku", _update("sku", "OTHER"), []),
        ("inspection brand", _update("brand", "brand-2"), []),
        ("override reason", _update("override_reason", "none", 2), []),
        ("override target", _update("overrides", None, 2), []),
        ("inspection unit code", _update("unit_code", "U-99"), []),
        ("an image byte flipped", lambda data, fx: _flip(img()(data)), []),
        ("an image marked pruned, then edited", pruned_edit, []),
        ("an image marked pruned and deleted, never uploaded", pruned_gone, []),
        ("an image file swapped for a link", image_link, []),
        ("an image's file name pointed at /dev/zero", relpath_dev_zero, []),
        ("an image row renamed", image_row_renamed, []),
        ("a record's image link swapped", link_swapped, []),
        ("a record's image link deleted", _sql("DROP TRIGGER inspection_images_no_delete",
                                               "DELETE FROM inspection_images WHERE rowid = 1"), []),
        ("a leaf rewritten to match an altered record", leaf_rewritten, []),
        ("two leaves swapped", leaves_swapped, []),
        ("a leaf renamed", _sql("DROP TRIGGER evidence_leaves_no_update",
                                "UPDATE evidence_leaves SET record_id = 'nobody' WHERE idx = 0"), []),
        ("a head's signature altered", _sql("DROP TRIGGER tree_heads_no_update",
                                            "UPDATE tree_heads SET signature = 'AAAA' || substr(signature, 5) "
                                            "WHERE tree_size = 2"), []),
        ("a head's root altered", _sql("DROP TRIGGER tree_heads_no_update",
                                       "UPDATE tree_heads SET root_hash = '" + "0" * 64 + "' WHERE tree_size = 1"), []),
        ("a forged record inserted", forged_record(False), []),
        ("a forged record logged under an attacker's head", forged_record(True), []),
        ("station key replaced and the log rebuilt", _rekey, []),
        ("station key replaced and the log rebuilt, checked against the platform", _rekey,
         ["--public-key", str(fx.key_pem)] + heads),
        ("a trigger dropped", _sql("DROP TRIGGER inspections_no_update"), []),
        ("a record in the middle deleted with its leaf", middle_deleted, []),
        ("rollback: newest record, leaf and head deleted", rollback(1), []),
        ("rollback: and the sync state's head", rollback(1, drop_state=True), []),
        ("rollback: and the witness file, checked against the platform", rollback(2, True, True), heads),
        ("database replaced by an empty one", _replace_with_empty(), []),
        ("database replaced by an empty one, checked against the platform", _replace_with_empty(True), heads),
        ("database replaced by an empty file", _replace_with_empty(zero_bytes=True), []),
        ("an index page corrupted", corrupt_index, []),
        ("database truncated", truncate, []),
        ("database replaced by random bytes", garbage, []),
        ("witness file garbage", witness_garbage, []),
    ]


# Not in the suite, because nothing on the station can catch it: every trace of the newest records removed,
# the station's witness copies included, and no platform head to compare with. `station verify` then passes
# with a note that a rollback cannot be ruled out without --head (tests/test_evidence_bundle_integrity.py).
EXPECTED_MISSES: set[str] = set()


def run_database_cases(fx: Fixture, work: Path) -> list[Outcome]:
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, alter, extra) in enumerate(database_cases(fx)):
        data = work / f"db-{i:03d}"
        shutil.copytree(fx.data, data, symlinks=True)
        alter(data, fx)
        result, code, msg = invoke_cli(["verify", "--data-dir", str(data), *extra])
        out.append(Outcome("database", name, result, code, msg))
        shutil.rmtree(data, ignore_errors=True)
    return out
