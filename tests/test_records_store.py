"""Station store hardening: migrations, transactional outbox, retention by disk budget, full-disk errors."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.records import MIGRATIONS, StationStore, StoreError, _split_sql, record_from_parts


def _record(i: int, sha: str, record_id: str | None = None):
    dec = Decision(Grade.B, Disposition.OPEN_BOX, (), False, ("G-1",))
    rec = record_from_parts(ReturnRequest(f"O-{i}", "SKU-1", ReturnReason.WRONG_SIZE), [], dec, 2, [("front", sha)],
                            "m", "st-1", {})
    if record_id is not None:
        import dataclasses

        rec = dataclasses.replace(rec, record_id=record_id)
    return rec


def _image(i: int) -> np.ndarray:
    img = np.full((64, 64, 3), (i * 37) % 256, np.uint8)
    img[i % 50:i % 50 + 10, 5:15] = 255
    return img


def test_schema_1_database_is_migrated_and_its_records_sealed(tmp_path):
    path = tmp_path / "station.db"
    db = sqlite3.connect(path)
    for stmt in _split_sql(MIGRATIONS[0]):
        db.execute(stmt)
    db.execute("PRAGMA user_version = 1")
    for i in range(3):
        db.execute("""INSERT INTO inspections(record_id, created_at, station_id, order_id, sku, reason, grade,
                      disposition, review, confidence, model_version, rules_fired, decision_json, findings_json,
                      timings_json) VALUES (?, '2026-01-01', 'st', ?, 'S', 'wrong_size', 'A', 'restock', 0, 1.0,
                      'm', 'G', '{}', '[]', '{}')""", (f"old-{i}", f"O-{i}"))
    db.commit()
    db.close()
    with StationStore(path) as store:
        assert store.schema_version() == len(MIGRATIONS) >= 2
        assert store.pending_count() == 3
        rep = store.verify()
        assert rep.ok and rep.tree_size == 3, rep.problems
        order = [r[0] for r in store.db.execute("SELECT record_id FROM evidence_leaves ORDER BY idx")]
        assert order == ["old-0", "old-1", "old-2"]
    with StationStore(path) as again:  # opening again changes nothing
        assert again.verify().tree_size == 3


def test_outbox_row_and_log_leaf_are_written_with_the_record_or_not_at_all(tmp_path):
    store = StationStore(tmp_path / "station.db").open()
    sha = store.put_image(_image(1)).sha256
    store.append(_record(1, sha, "rec-1"))
    assert store.pending_count() == 1 and store.count() == 1
    with pytest.raises(StoreError, match="cannot record inspection rec-1"):
        store.append(_record(2, sha, "rec-1"))  # same id: refused as a whole
    assert store.count() == 1 and store.pending_count() == 1
    assert store.db.execute("SELECT COUNT(*) FROM evidence_leaves").fetchone()[0] == 1
    store.append_many([_record(3, sha, "rec-3"), _record(4, sha, "rec-4")])
    assert store.pending_count() == 3 and store.verify().ok
    batch = store.outbox_batch(2)
    assert [r["record_id"] for r in batch] == ["rec-1", "rec-3"]
    assert batch[0]["images"] == [{"view": "front", "sha256": sha}] and batch[0]["leaf_index"] == 0
    store.mark_sent(["rec-1"])
    assert [r["record_id"] for r in store.outbox_batch(10)] == ["rec-3", "rec-4"]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("DELETE FROM evidence_leaves")


def test_a_second_connection_appending_keeps_one_consistent_log(tmp_path):
    a = StationStore(tmp_path / "station.db").open()
    b = StationStore(tmp_path / "station.db").open()
    sha = a.put_image(_image(1)).sha256
    for i in range(6):
        (a if i % 2 else b).append(_record(i, sha))
    rep = a.verify()
    assert rep.ok and rep.tree_size == 6, rep.problems


def test_retention_prunes_synced_images_oldest_first_and_never_unsynced(tmp_path):
    store = StationStore(tmp_path / "station.db").open()
    shas = []
    for i in range(6):
        sha = store.put_image(_image(i)).sha256
        store.db.execute("UPDATE images SET created_at=? WHERE sha256=?", (f"2026-01-0{i + 1}", sha))
        store.append(_record(i, sha, f"r{i}"))
        shas.append(sha)
    # r0..r3 are synced with their images; r4 is sent but its image not uploaded; r5 is unsent.
    store.mark_sent(["r0", "r1", "r2", "r3", "r4"])
    store.mark_images_uploaded(shas[:4] + [shas[5]])
    sizes = dict(store.db.execute("SELECT sha256, bytes FROM images"))
    budget = sum(sizes.values()) - sizes[shas[0]] - sizes[shas[1]]  # room made by pruning exactly two
    rep = store.enforce_image_budget(budget)
    assert rep.pruned == 2 and rep.within_budget
    assert not store.image_path(shas[0]).exists() and not store.image_path(shas[1]).exists()
    assert store.image_path(shas[2]).exists()
    rep = store.enforce_image_budget(0)  # impossible budget: only the synced ones go
    assert not rep.within_budget and rep.pruned == 2
    assert store.image_path(shas[4]).exists() and store.image_path(shas[5]).exists()
    v = store.verify()
    assert v.ok and v.images_pruned == 4 and v.images_checked == 2, v.problems


def test_full_disk_is_a_clear_error_and_nothing_is_written(tmp_path):
    store = StationStore(tmp_path / "station.db", min_free_bytes=1 << 62).open()
    with pytest.raises(StoreError, match="disk full") as exc:
        store.put_image(_image(1))
    assert "Nothing was written" in str(exc.value)
    assert store.db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
    assert not any(p.is_file() for p in (tmp_path / "images").rglob("*"))


def test_sqlite_disk_full_maps_to_the_same_message(tmp_path):
    store = StationStore(tmp_path / "station.db").open()
    sha = store.put_image(_image(1)).sha256
    page_count = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {page_count}")  # the database cannot grow: SQLITE_FULL
    with pytest.raises(StoreError, match="disk full"):
        store.append_many([_record(i, sha) for i in range(200)])
    assert store.count() == 0 and store.pending_count() == 0
