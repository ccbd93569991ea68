"""Learning-loop parts: dataset export from records, the promotion gate's verdict, drift watch, shadow mode."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from models.dataset import DatasetSpec, write_dataset
from models.drift import DriftPolicy, drift_report
from models.evaluate import EvalReport
from models.gate import GatePolicy, decide
from models.onnx_yolo import OnnxYoloDetector
from models.shadow import ShadowDetector, ShadowLog
from station.config import BUNDLED_MODEL
from station.domain import (DETECTOR_CLASSES, Decision, Detections, Disposition, Finding, FindingSource, Grade,
                            ReturnReason, ReturnRequest)
from station.learning import ExportError, ExportSpec, assign_splits, export_dataset
from station.records import StationStore, StoreError, record_from_parts
from vision.synth import ProductShape, SceneStyle, random_look, render_item

# ------------------------------------------------------------------------------------------- export


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)


def _record(store: StationStore, order: str, unit: str | None, views: dict[str, list[Finding]], seed: int) -> str:
    hashes = [(v, store.put_image(_image(seed + i)).sha256) for i, v in enumerate(views)]
    findings = [f for fs in views.values() for f in fs]
    decision = Decision(Grade.B, Disposition.OPEN_BOX, (), False, ("R1",))
    rec = record_from_parts(ReturnRequest(order, "APP-TEE-M", ReturnReason.QUALITY_ISSUE, unit_code=unit), findings,
                            decision, 2, hashes, "weak-1", "st-1", {})
    store.append(rec)
    return rec.record_id


def _det(kind, score, view, box):
    return Finding(kind, score, FindingSource.DETECTOR, view, box)


@pytest.fixture()
def store(tmp_path):
    with StationStore(tmp_path / "st" / "station.db", min_free_bytes=0) as s:
        yield s


def test_export_labels_from_corrections_confirmed_detections_and_negatives(store, tmp_path):
    # A: detector sure of a scratch, never reviewed -> confirmed label.
    a = _record(store, "o-a", "u-a", {"front": [_det("scratch", 0.9, "front", (10, 20, 50, 60))]}, 1)
    # B: detector unsure (0.3) on front, nothing on side; never reviewed -> front left out, side not a negative.
    _record(store, "o-b", "u-b", {"front": [_det("dent", 0.3, "front", (0, 0, 40, 40))], "side": []}, 10)
    # C: detector saw a stain; the supervisor says it is a tear somewhere else, and the side is clean.
    c = _record(store, "o-c", "u-c", {"front": [_det("stain", 0.8, "front", (5, 5, 30, 30))], "side": []}, 20)
    first = store.override_boxes(c, "sup-1", "wrong class", [{"view": "front", "class": "crack",
                                                              "box_xyxy": [1, 1, 9, 9]}])
    store.override_boxes(first, "sup-2", "it is a tear", [{"view": "front", "class": "tear",
                                                           "box_xyxy": [40, 30, 120, 90]}])  # latest wins
    # D: a second inspection of unit u-a (same physical item): must share A's split.
    d = _record(store, "o-d", "u-a", {"top": [_det("wear", 0.95, "top", (0, 0, 10, 10))]}, 30)

    man = export_dataset(store, tmp_path / "ds", ExportSpec(min_confidence=0.5, val_share=0.5, blur_faces=False))
    by = {(f["record_id"], f["view"]): f for f in man["files"]}
    assert set(by) == {(a, "front"), (c, "front"), (c, "side"), (d, "top")}
    assert man["skipped"]["uncertain_views"] == 1
    front_c = (tmp_path / "ds" / by[(c, "front")]["label"]).read_text().split()
    assert front_c[0] == str(DETECTOR_CLASSES.index("tear"))
    np.testing.assert_allclose([float(v) for v in front_c[1:]], [80 / 160, 60 / 120, 80 / 160, 60 / 120], atol=1e-5)
    assert by[(c, "front")]["labels_from"] == "override" and by[(a, "front")]["labels_from"] == "detector"
    assert (tmp_path / "ds" / by[(c, "side")]["label"]).read_text() == ""  # checked clean: a hard negative
    assert by[(a, "front")]["split"] == by[(d, "top")]["split"]  # one item, one split
    assert {f["split"] for f in man["files"]} == {"train", "val"}
    for f in man["files"]:  # the manifest's hashes are the files' hashes
        assert hashlib.sha256((tmp_path / "ds" / f["image"]).read_bytes()).hexdigest() == f["image_sha256"]
        assert hashlib.sha256((tmp_path / "ds" / f["label"]).read_bytes()).hexdigest() == f["label_sha256"]
    assert yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())["names"][3] == "tear"
    # History is untouched: the original still says stain, the override rows point at it.
    assert json.loads(store.get(c)["findings_json"])[0]["kind"] == "stain"
    assert store.get(first)["overrides"] == c and store.get(first)["operator"] == "sup-1"

    only = export_dataset(store, tmp_path / "ds2", ExportSpec(corrected_only=True, val_share=0, blur_faces=False))
    assert {f["record_id"] for f in only["files"]} == {c}
    with pytest.raises(ExportError, match="since"):
        export_dataset(store, tmp_path / "ds3", ExportSpec(since="2999-01-01", blur_faces=False))
    with pytest.raises(StoreError, match="who"):
        store.override_boxes(c, "", "x", [])


def test_splits_are_deterministic_and_keep_val_non_empty():
    groups = [f"u{i}" for i in range(10)]
    s1, s2 = assign_splits(groups, 0.2, 0.1), assign_splits(list(reversed(groups)), 0.2, 0.1)
    assert s1 == s2
    assert sorted(s1.values()).count("val") == 2 and sorted(s1.values()).count("test") == 1
    assert set(assign_splits(["a", "b"], 0.05, 0).values()) == {"train", "val"}


def test_export_blurs_address_labels(store, tmp_path):
    img = np.full((240, 320, 3), 200, np.uint8)
    for y in range(60, 140, 14):  # a printed address block
        for x in range(40, 260, 9):
            img[y:y + 8, x:x + 5] = 20
    sha = store.put_image(img).sha256
    rec = record_from_parts(ReturnRequest("o-l", "APP-TEE-M", ReturnReason.QUALITY_ISSUE), [],
                            Decision(Grade.A, Disposition.RESTOCK, (), False, ()), 1, [("label", sha)], "m", "st", {})
    store.append(rec)
    store.override_boxes(rec.record_id, "sup", "clean", [])
    man = export_dataset(store, tmp_path / "ds", ExportSpec(val_share=0, blur_faces=False, blur_labels=True))
    assert man["privacy"]["images_changed"] == 1
    import cv2

    out = cv2.imread(str(tmp_path / "ds" / man["files"][0]["image"]))
    assert not np.array_equal(out[60:140, 40:260], img[60:140, 40:260])  # the text block is blurred
    assert np.array_equal(out[:40], img[:40]) and np.array_equal(out[200:], img[200:])  # the rest is not
    plain = export_dataset(store, tmp_path / "ds2", ExportSpec(val_share=0, blur_faces=False, blur_labels=False))
    assert plain["privacy"]["images_changed"] == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "ds2" / plain["files"][0]["image"])), img)


def test_cli_export_and_correct_errors(tmp_path, store):
    data = tmp_path / "st"
    rid = _record(store, "o-x", "u-x", {"front": []}, 3)

    def station(*args):
        return subprocess.run([sys.executable, "-m", "station.cli", *args, "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=120)

    for bad, msg in (((rid, "--boxes", "[{]"), "not readable JSON"),
                     ((rid, "--boxes", '[{"view": "front", "class": "smudge", "box_xyxy": [0, 0, 5, 5]}]'), "box 0"),
                     ((rid, "--boxes", '[{"view": "back", "class": "dent", "box_xyxy": [0, 0, 5, 5]}]'), "no 'back' view"),
                     (("nope", "--boxes", "[]"), "not found")):
        proc = station("dataset", "correct", *bad, "--operator", "sup", "--reason", "r")
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = station("dataset", "correct", rid, "--boxes", '[{"view": "front", "class": "dent", "box_xyxy": [1, 2, 30, 40]}]',
                   "--operator", "sup", "--reason", "missed dent")
    assert proc.returncode == 0, proc.stderr
    proc = station("dataset", "export", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["splits"]["train"]["boxes"]["dent"] == 1
    proc = station("dataset", "export", str(tmp_path / "out"))
    assert proc.returncode == 2 and "not empty" in proc.stderr
    proc = station("model", "drift", "--json")
    assert proc.returncode == 0, proc.stderr
    drift = json.loads(proc.stdout)
    assert drift["recent"]["items"] == 1 and not drift["enough_data"] and len(drift["per_class"]) == 10
    proc = subprocess.run([sys.executable, "-m", "station.cli", "model", "drift", "--data-dir", str(tmp_path / "no")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no station database" in proc.stderr


# ------------------------------------------------------------------------------------------- gate


def _report(recall: list[float], instances: list[int]) -> EvalReport:
    nc = len(recall)
    return EvalReport(DETECTOR_CLASSES[:nc], 10, instances, 0.5, 0.3, [0.5] * nc, [0.3] * nc, [0.8] * nc, recall,
                      [[0] * (nc + 1) for _ in range(nc + 1)])


def test_gate_refuses_a_recall_drop_beyond_tolerance_and_slower_models():
    policy = GatePolicy(recall_tolerance=0.05, max_latency_ratio=1.5, min_instances=3)
    active = _report([0.8, 0.6, 0.9], [10, 10, 2])
    ok = decide(active, _report([0.76, 0.9, 0.0], [10, 10, 2]), 10.0, 14.0, policy)
    assert ok.passed and ok.reasons == ()  # -0.04 is within tolerance; class 2 has too few labels to gate
    assert [c.gated for c in ok.classes] == [True, True, False]
    bad = decide(active, _report([0.7, 0.9, 0.9], [10, 10, 2]), 10.0, 16.0, policy)
    assert not bad.passed and len(bad.reasons) == 2
    assert "recall of scratch drops 0.800 -> 0.700" in bad.reasons[0] and "latency" in bad.reasons[1]
    assert bad.to_json()["decision"] == "refuse" and bad.to_json()["latency_ms"]["ratio"] == 1.6
    nothing = decide(_report([0.8], [1]), _report([0.8], [1]), 10.0, 10.0, policy)
    assert not nothing.passed and "nothing to judge" in nothing.reasons[0]


# ------------------------------------------------------------------------------------------- drift


def _rows(n: int, day: str, rate: dict[str, float], score: float, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        findings = [{"kind": c, "score": score, "source": "detector"} for c, r in rate.items() if (i % 100) < r * 100]
        rows.append({"created_at": f"{day}T10:00:{i % 60:02d}", "model_version": "m1", "overrides": None,
                     "findings_json": json.dumps(findings)})
    return rows


def test_drift_warns_when_a_class_rate_or_confidence_moves():
    base = _rows(100, "2026-11-01", {"scratch": 0.3, "dent": 0.2}, 0.8)
    same = _rows(100, "2026-11-02", {"scratch": 0.3, "dent": 0.2}, 0.8)
    policy = DriftPolicy(window=100, baseline=100, rate_threshold=0.1, confidence_threshold=0.1, min_items=20)
    quiet = drift_report(base + same, policy)
    assert quiet["warnings"] == [] and quiet["enough_data"]
    moved = drift_report(base + _rows(100, "2026-11-02", {"scratch": 0.6, "dent": 0.2}, 0.55), policy)
    per = {c["class"]: c for c in moved["per_class"]}
    assert per["scratch"]["warn"] and per["scratch"]["rate_delta"] == pytest.approx(0.3)
    assert per["dent"]["warn"] and per["dent"]["rate_delta"] == 0  # confidence fell 0.8 -> 0.55
    assert not per["crack"]["warn"]
    assert per["scratch"]["rate_warn"] and per["scratch"]["confidence_warn"]  # its scores fell too
    assert per["dent"]["confidence_warn"] and not per["dent"]["rate_warn"]
    assert [s["day"] for s in moved["series"]] == ["2026-11-01", "2026-11-02"]
    assert sum(per["scratch"]["recent_confidence_hist"]) == 60
    few = drift_report(base[:10] + _rows(10, "2026-11-02", {"scratch": 1.0}, 0.2), policy)
    assert few["warnings"] == [] and not few["enough_data"]


# ------------------------------------------------------------------------------------------- shadow


def _model(tmp_path, name, confidence):
    onnx = tmp_path / f"{name}.onnx"
    shutil.copyfile(BUNDLED_MODEL, onnx)
    card = yaml.safe_load(BUNDLED_MODEL.with_suffix(".yaml").read_text())
    card["thresholds"]["confidence"] = confidence
    card["name"] = name
    onnx.with_suffix(".yaml").write_text(yaml.safe_dump(card))
    return OnnxYoloDetector(onnx, threads=1).load()


def test_shadow_stores_disagreements_and_never_changes_the_answer(tmp_path):
    active, candidate = _model(tmp_path, "active", 0.2), _model(tmp_path, "cand", 0.999)
    rng = np.random.default_rng(3)
    style = SceneStyle(size=(320, 320))
    images = [render_item(rng, random_look(rng, ProductShape.GADGET), ("crack", "scratch"), style, "front").image
              for _ in range(2)]
    log = ShadowLog(tmp_path / "models" / "shadow.db")
    shadow = ShadowDetector(active, candidate, log.record)
    got = shadow.detect(images)
    shadow.flush(60)
    want = active.detect(images)
    assert shadow.version == active.version
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.class_id, w.class_id)
        np.testing.assert_allclose(g.xyxy, w.xyxy)
    assert sum(len(w) for w in want) > 0, "the active model should see the painted defects"
    rows = log.rows()
    assert len(rows) == shadow.disagreements > 0 and shadow.compared == 1
    assert all(r["candidate_version"].startswith("cand@") and r["only_active"] and not r["only_candidate"]
               and r["record_id"] is None for r in rows)  # used outside a pipeline: no record to name

    class Broken:
        version = "broken"

        def detect(self, images):
            raise RuntimeError("boom")

    errors = []
    s2 = ShadowDetector(active, Broken(), log.record, on_error=errors.append)
    assert len(s2.detect(images)) == 2
    s2.flush(60)
    s2.close()
    shadow.close()
    log.close()
    assert s2.errors == 1 and "boom" in errors[0]


def test_cli_evaluate_table_json_and_exit_codes(tmp_path):
    """`station model evaluate` on a small golden set: a model equals itself (exit 0); a blind copy is refused."""
    write_dataset(tmp_path / "golden", DatasetSpec(train=0, val=0, test=8, seed=5, size=320))
    same = _model(tmp_path, "same", 0.25).model_path
    blind = _model(tmp_path, "blind", 0.9999).model_path
    data = str(tmp_path / "data")

    def station(*args):
        return subprocess.run([sys.executable, "-m", "station.cli", "model", "evaluate", *args, "--golden",
                               str(tmp_path / "golden"), "--min-instances", "1", "--max-latency-ratio", "20",
                               "--data-dir", data], capture_output=True, text=True, timeout=300)

    ok = station(str(same), "--against", str(BUNDLED_MODEL), "--json")
    assert ok.returncode == 0, ok.stderr
    rep = json.loads(ok.stdout)
    assert rep["decision"] == "promote" and rep["override_images"] == 0 and rep["golden_images"] == 8
    assert all(c["delta"] == 0 for c in rep["per_class"]) and rep["latency_ms"]["active"] > 0
    refused = station(str(blind))  # against the configured model: no registry version is active
    assert refused.returncode == 1 and "REFUSE" in refused.stdout and "drops" in refused.stdout
    bad = station("nope.onnx")
    assert bad.returncode == 2 and "neither a registered version" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------- shadow: record ids


class _Stub:
    """A detector that answers with fixed boxes, optionally only once ``gate`` is set."""

    def __init__(self, version: str, boxes: list[tuple[int, tuple[float, float, float, float]]], gate=None):
        self.version, self.class_names, self.boxes, self.gate = version, DETECTOR_CLASSES, boxes, gate

    def detect(self, images):
        if self.gate is not None:
            assert self.gate.wait(30)
        det = Detections(np.array([b for _, b in self.boxes], np.float32).reshape(-1, 4),
                         np.array([c for c, _ in self.boxes], np.int32), np.full(len(self.boxes), 0.9, np.float32),
                         DETECTOR_CLASSES)
        return [det for _ in images]


def test_shadow_disagreements_wait_for_the_record_id_either_way(tmp_path):
    """link() may come before or after the candidate finishes; unlinked items are stored without a record id."""
    import threading

    images = [np.zeros((64, 64, 3), np.uint8)]
    active = _Stub("act", [(0, (1, 1, 20, 20))])
    log = ShadowLog(tmp_path / "shadow.db")
    # Candidate finishes first: its disagreement waits for the record id (the line does not).
    s = ShadowDetector(active, _Stub("fast", []), log.record)
    s.detect(images)
    s._pending.result(30)
    assert log.rows() == []
    s.link("rec-fast")
    # Link first, candidate later.
    gate = threading.Event()
    s2 = ShadowDetector(active, _Stub("slow", [], gate), log.record)
    s2.detect(images)
    s2.link("rec-slow")
    gate.set()
    s2.flush(30)
    # Never linked (the pipeline failed after detection): stored at the next item, without a record id.
    s3 = ShadowDetector(active, _Stub("orphan", []), log.record)
    s3.detect(images)
    s3._pending.result(30)
    s3.detect(images)
    s3.link("rec-next")
    for x in (s, s2, s3):
        x.close()
    rows = {(r["candidate_version"], r["record_id"]) for r in log.rows()}
    assert rows == {("fast", "rec-fast"), ("slow", "rec-slow"), ("orphan", None), ("orphan", "rec-next")}
    assert [r["record_id"] for r in log.rows(record_id="rec-slow")] == ["rec-slow"]
    log.close()


def test_shadow_on_the_line_names_each_record_and_never_changes_a_decision(tmp_path, sample_catalogue_dir):
    """A station with a shadow candidate (models.shadow): every stored disagreement names the record of the item
    it came from (and `station model shadow --json` shows it); the same items on a station without the shadow
    get the same decisions, findings and model version."""
    from models.dataset import render_sample
    from models.registry import ModelRegistry
    from station.app import boot
    from station.config import ModelsConfig, StationConfig, StationSection
    from station.domain import Frame

    active = _model(tmp_path, "line", 0.25).model_path
    blind = _model(tmp_path, "blindcand", 0.999).model_path  # misses everything: a disagreement per view with boxes

    def station_dir(name: str, shadow: bool):
        d = tmp_path / name
        shutil.copytree(sample_catalogue_dir, d / "sample_catalogue")
        with ModelRegistry(d) as reg:
            reg.register(active, "line-1")
            reg.register(blind, "cand-1")
            reg.activate("line-1", StationSection().id, "test")
        return StationConfig(station=StationSection(data_dir=d),
                             models=ModelsConfig(shadow="cand-1" if shadow else None))

    def run(cfg, flush: bool):
        st = boot(cfg)
        rng = np.random.default_rng(5)
        spec = DatasetSpec(size=320, clean_share=0.0)
        out = []
        try:
            for i in range(4):
                frames = [Frame(render_sample(rng, i * 2 + k, spec).image, v) for k, v in enumerate(("front", "side"))]
                res = st.pipeline.inspect(ReturnRequest(f"o-{i}", "TOY-BEAR-S", ReturnReason.QUALITY_ISSUE,
                                                        unit_code=f"u-{i}"), frames, operator="line")
                if flush:
                    st.pipeline.detector.flush(60)  # let the candidate see every item (the line would skip some)
                out.append(res)
        finally:
            st.close()
        return out

    with_shadow = run(station_dir("shadowed", True), flush=True)
    without = run(station_dir("plain", False), flush=False)
    for a, b in zip(with_shadow, without):
        ja, jb = a.to_json(), b.to_json()
        for k in ("record_id", "timings_ms"):
            ja.pop(k), jb.pop(k)
        assert ja == jb and ja["model_version"] == "line-1"

    data = tmp_path / "shadowed"
    proc = subprocess.run([sys.executable, "-m", "station.cli", "model", "shadow", "--json", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["disagreements"]
    # One disagreement per view the active model found something on; each names that item's record, and the
    # boxes the candidate missed are exactly the ones the record holds for that view.
    expected = {(r.record.record_id, k): r.detections[v] for r in with_shadow for k, v in enumerate(("front", "side"))
                if len(r.detections[v])}
    assert expected and len(rows) == len(expected)
    for row in rows:
        det = expected[(row["record_id"], row["view_index"])]
        assert row["candidate_version"] == "cand-1" and row["active_version"] == "line-1" and not row["only_candidate"]
        assert sorted(b["class"] for b in row["only_active"]) == sorted(det.names())
