"""Evidence log: RFC 6962 proofs, signed heads, tamper detection on a real store, bundles via the CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from station import evidence as ev
from station.domain import Decision, Disposition, Finding, FindingSource, Grade, ReturnReason, ReturnRequest
from station.records import StationStore, record_from_parts


def leaves_of(n: int) -> list[bytes]:
    return [ev.leaf_hash(f"leaf {i}".encode()) for i in range(n)]


def test_roots_match_the_rfc_definition():
    assert ev.merkle_root([]) == hashlib.sha256(b"").digest()
    a, b, c = leaves_of(3)
    assert ev.merkle_root([a]) == a
    assert ev.merkle_root([a, b, c]) == ev.node_hash(ev.node_hash(a, b), c)
    for n in range(1, 40):
        lv = leaves_of(n)
        assert ev.merkle_root(lv) == ev._mth(lv, 0, n)


def test_inclusion_proofs_for_every_leaf_and_size():
    for n in range(1, 34):
        lv = leaves_of(n)
        root = ev.merkle_root(lv)
        for i in range(n):
            proof = ev.inclusion_proof(i, lv)
            assert ev.verify_inclusion(i, n, lv[i], proof, root)
            assert not ev.verify_inclusion(i, n, ev.leaf_hash(b"other"), proof, root)
            if proof:
                bad = [bytes(32)] + proof[1:]
                assert not ev.verify_inclusion(i, n, lv[i], bad, root)
            if n > 1:
                assert not ev.verify_inclusion((i + 1) % n, n, lv[i], proof, root) or lv[i] == lv[(i + 1) % n]


def test_consistency_proofs_for_every_pair():
    for n in range(1, 22):
        lv = leaves_of(n)
        new_root = ev.merkle_root(lv)
        for m in range(1, n + 1):
            old_root = ev.merkle_root(lv[:m])
            proof = ev.consistency_proof(m, lv)
            assert ev.verify_consistency(m, n, old_root, new_root, proof), (m, n)
            if m < n:
                assert not ev.verify_consistency(m, n, ev.leaf_hash(b"x"), new_root, proof)
                forked = lv[: m - 1] + [ev.leaf_hash(b"rewritten")] + lv[m:]
                assert not ev.verify_consistency(m, n, old_root, ev.merkle_root(forked), proof)


def _store_with_records(tmp_path: Path, n: int = 3) -> tuple[StationStore, list[str]]:
    store = StationStore(tmp_path / "data" / "station.db").open()
    ids = []
    for i in range(n):
        img = np.full((40, 60, 3), 30 + 40 * i, np.uint8)
        img[5:15, 5:25] = (0, 0, 255)
        sha = store.put_image(img).sha256
        dec = Decision(Grade.C, Disposition.REFURBISH, (), False, ("G-TEST", f"R-{i}"), ("why",), 0.8)
        finding = Finding("scratch", 0.77, FindingSource.DETECTOR, "front", (5.0, 5.0, 25.0, 15.0))
        rec = record_from_parts(ReturnRequest(f"ORD-{i}", "GAD-EARBUD-X2", ReturnReason.QUALITY_ISSUE, f"U-{i}",
                                              "live", "streamer-1", "brand-1", "carrier-1"),
                                [finding], dec, 3, [("front", sha)], "test-model", "st-1", {"rules": 1.0}, "op")
        store.append(rec)
        ids.append(rec.record_id)
    ids.append(store.override(ids[0], "sup-1", "customer photo shows it was fine", grade=Grade.B))
    return store, ids


def test_station_key_is_private_and_stable(tmp_path):
    store, _ = _store_with_records(tmp_path, 1)
    mode = stat.S_IMODE(store.key_path.stat().st_mode)
    assert mode == 0o600
    pem = store.public_key_pem()
    store.close()
    with StationStore(tmp_path / "data" / "station.db") as again:
        assert again.public_key_pem() == pem
        assert again.verify().ok


def test_clean_log_verifies(tmp_path):
    store, ids = _store_with_records(tmp_path)
    rep = store.verify()
    assert rep.ok, rep.problems
    assert rep.records == rep.tree_size == len(ids) and rep.heads_checked == len(ids) and rep.images_checked == 3


@pytest.mark.parametrize("column, value", [
    ("grade", "A"), ("disposition", "restock"), ("confidence", 0.81), ("decision_json", '{"grade": "A"}'),
    ("findings_json", "[]"), ("created_at", "2020-01-01T00:00:00.000+00:00"), ("operator", "someone-else"),
    ("streamer", "streamer-2"), ("order_id", "ORD-9"), ("review", 1), ("lane", 1), ("rules_fired", "G-TEST"),
])
def test_altering_any_field_of_a_stored_record_is_detected(tmp_path, column, value):
    store, ids = _store_with_records(tmp_path)
    db = sqlite3.connect(store.db_path)
    db.execute("DROP TRIGGER inspections_no_update")
    db.execute(f"UPDATE inspections SET {column} = ? WHERE record_id = ?", (value, ids[1]))
    db.commit()
    rep = store.verify()
    assert not rep.ok
    assert any(ids[1] in p and "altered" in p for p in rep.problems), rep.problems


def test_altering_one_byte_of_an_image_is_detected(tmp_path):
    store, ids = _store_with_records(tmp_path)
    sha = store.db.execute("SELECT sha256 FROM inspection_images WHERE record_id=?", (ids[2],)).fetchone()[0]
    path = store.image_path(sha)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    rep = store.verify()
    assert not rep.ok and any(sha in p and "altered" in p for p in rep.problems)


def test_rewriting_the_leaf_too_is_caught_by_the_signed_heads(tmp_path):
    store, ids = _store_with_records(tmp_path)
    db = sqlite3.connect(store.db_path)
    db.executescript("DROP TRIGGER inspections_no_update; DROP TRIGGER evidence_leaves_no_update;")
    db.execute("UPDATE inspections SET grade='A' WHERE record_id=?", (ids[0],))
    db.commit()
    new_leaf = ev.leaf_hash(ev.record_leaf_from_db(db, ids[0])).hex()
    db.execute("UPDATE evidence_leaves SET leaf_hash=? WHERE record_id=?", (new_leaf, ids[0]))
    db.commit()
    rep = store.verify()
    assert not rep.ok and any("rewritten" in p for p in rep.problems), rep.problems


def test_removing_the_newest_record_is_detected(tmp_path):
    store, ids = _store_with_records(tmp_path)
    db = sqlite3.connect(store.db_path)
    db.executescript("DROP TRIGGER inspections_no_delete; DROP TRIGGER evidence_leaves_no_delete;")
    db.execute("DELETE FROM outbox WHERE record_id=?", (ids[-1],))
    db.execute("DELETE FROM evidence_leaves WHERE record_id=?", (ids[-1],))
    db.execute("DELETE FROM inspections WHERE record_id=?", (ids[-1],))
    db.commit()
    rep = store.verify()
    assert not rep.ok and any("beyond the log" in p for p in rep.problems)


def test_a_head_signed_by_another_key_fails(tmp_path):
    store, _ = _store_with_records(tmp_path)
    other = ev.StationKey(tmp_path / "other.pem").load()
    assert not store.verify(other.public).ok


# ------------------------------------------------------------------------------------------- CLI


def station(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


def test_cli_verify_inclusion_consistency_and_bundle(tmp_path):
    store, ids = _store_with_records(tmp_path)
    store.close()
    data = tmp_path / "data"
    proc = station("verify", "--json", "--record", ids[1], "--consistency", "2", "4", data_dir=data)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["inclusion"]["ok"] and out["consistency"]["ok"] and out["tree_size"] == 4

    bundle = tmp_path / "ord0.zip"
    proc = station("evidence", "ORD-0", "--out", str(bundle), data_dir=data)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        decision = json.loads(zf.read(f"decision/{ids[0]}.json"))
    assert len(manifest["records"]) == 2  # the inspection and its override
    assert any(n.startswith("annotated/") for n in names) and any(n.startswith("images/") for n in names)
    assert "G-TEST" in decision["rule_ids"] and "public_key.pem" in names and "head.json" in names
    key = tmp_path / "station.pub"
    key.write_bytes(ev.StationKey(data / "keys" / "station_ed25519.pem").load().public_pem())
    ok = subprocess.run([sys.executable, "-m", "station.cli", "verify-bundle", str(bundle), "--public-key", str(key),
                         "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] and json.loads(ok.stdout)["key_source"] == "given"

    # A third party with a different key, or a bundle with one altered byte in an image, fails.
    other = tmp_path / "other.pub"
    other.write_bytes(ev.StationKey(tmp_path / "o.pem").load().public_pem())
    bad_key = subprocess.run([sys.executable, "-m", "station.cli", "verify-bundle", str(bundle), "--public-key",
                              str(other)], capture_output=True, text=True)
    assert bad_key.returncode == 1 and "does not verify" in bad_key.stdout
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            raw = src.read(name)
            if name.startswith("images/"):
                raw = raw[:-1] + bytes([raw[-1] ^ 1])
            if name.startswith("records/"):
                raw = raw.replace(b'"grade":"C"', b'"grade":"A"')
            dst.writestr(name, raw)
    bad = subprocess.run([sys.executable, "-m", "station.cli", "verify-bundle", str(tampered), "--json"],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    problems = json.loads(bad.stdout)["problems"]
    assert any("was altered" in p for p in problems) and any("not included" in p for p in problems)


def test_cli_verify_detects_tampering_and_bad_input_is_clean(tmp_path):
    store, ids = _store_with_records(tmp_path)
    store.close()
    data = tmp_path / "data"
    db = sqlite3.connect(data / "station.db")
    db.execute("DROP TRIGGER inspections_no_update")
    db.execute("UPDATE inspections SET disposition='restock' WHERE record_id=?", (ids[2],))
    db.commit()
    proc = station("verify", data_dir=data)
    assert proc.returncode == 1 and "FAILED" in proc.stdout and ids[2] in proc.stdout
    for args, needle in ((("evidence", "NO-SUCH-ORDER", "--out", str(tmp_path / "x.zip")), "no records of order"),
                         (("verify", "--record", "nope"), "not in the evidence log"),
                         (("verify", "--consistency", "3", "99"), "need signed heads")):
        proc = station(*args, data_dir=data)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = station("verify", data_dir=tmp_path / "empty")
    assert proc.returncode == 2 and "no station database" in proc.stderr
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    proc = subprocess.run([sys.executable, "-m", "station.cli", "verify-bundle", str(junk)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "not a readable zip" in proc.stderr
