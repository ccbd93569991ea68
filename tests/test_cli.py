"""The CLI contracts, run as real processes: JSON fields, exit codes, no tracebacks on bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.camera import StagedItem, SyntheticCamera


def station(*args: str, data_dir: Path, stdin: str | None = None, config: Path | None = None):
    cmd = [sys.executable, "-m", "station.cli", *args, "--data-dir", str(data_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=300)


def assert_clean_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture()
def item_images(tmp_path) -> list[Path]:
    cam = SyntheticCamera(seed=3)
    cam.stage(StagedItem("GAD-EARBUD-X2", {"front": ("package_damage",)}, seed=5))
    paths = []
    for view in ("front", "side"):
        p = tmp_path / f"{view}.jpg"
        cv2.imwrite(str(p), cam.capture(view).image)
        paths.append(p)
    return paths


def test_inspect_json_contract(data_dir, item_images):
    proc = station("inspect", "--json", "--sku", "GAD-EARBUD-X2", "--reason", "damaged_in_transit",
                   "--unit-code", "U-1", "--streamer", "live-lily", *map(str, item_images), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("detections", "findings", "grade", "disposition", "liability", "review", "timings_ms"):
        assert key in out
    for det in out["detections"]:
        assert set(det) >= {"class", "score", "box_xyxy"} and len(det["box_xyxy"]) == 4
    assert out["grade"] in "ABCD"
    shares = [s["share"] for s in out["liability"]]
    assert sum(shares) == pytest.approx(1.0)
    assert all(set(s) >= {"party", "share", "rule", "reason"} for s in out["liability"])
    assert set(out["timings_ms"]) >= {"quality", "detect", "compare", "rules", "record"}
    assert isinstance(out["review"], bool)
    # It was recorded, with both images, by content hash.
    db = sqlite3.connect(data_dir / "station.db")
    assert db.execute("SELECT COUNT(*) FROM inspections WHERE unit_code='U-1'").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM inspection_images").fetchone()[0] == 2


@pytest.mark.parametrize("case", ["missing", "corrupt", "unknown_sku", "unknown_reason", "presentation"])
def test_inspect_bad_input(case, data_dir, item_images, tmp_path):
    args = ["inspect", "--json", "--sku", "GAD-EARBUD-X2", "--reason", "quality_issue"]
    images = list(map(str, item_images))
    if case == "missing":
        images.append(str(tmp_path / "nope.jpg"))
        needle = "not found"
    elif case == "corrupt":
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
        images.append(str(bad))
        needle = "corrupt"
    elif case == "presentation":
        args += ["--presentation", str(tmp_path / "stream.png")]
        needle = "presentation image"
    elif case == "unknown_sku":
        args[3] = "NO-SUCH-SKU"
        needle = "unknown SKU 'NO-SUCH-SKU'"
    else:
        args[5] = "because"
        needle = "unknown reason 'because'"
    proc = station(*args, *images, data_dir=data_dir)
    assert_clean_error(proc, needle)
    db_path = data_dir / "station.db"
    if db_path.exists():  # nothing half-written on bad input
        assert sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM inspections").fetchone()[0] == 0


def test_inspect_with_presentation_image(data_dir, item_images, tmp_path):
    """A stream shot of the same item with every hue turned 60 degrees: the colour complaint goes to the streamer,
    and the JSON carries the measured presentation ΔE."""
    shot = cv2.imread(str(item_images[0]))
    hsv = cv2.cvtColor(shot, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 30) % 180
    stream = tmp_path / "stream.png"
    cv2.imwrite(str(stream), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))
    proc = station("inspect", "--json", "--sku", "GAD-EARBUD-X2", "--reason", "colour_difference",
                   "--presentation", str(stream), *map(str, item_images), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["presentation"]["mismatch"] is True and out["presentation"]["delta_e00"] > 3
    assert "presentation_mismatch" in {f["kind"] for f in out["findings"]}


def test_decide_from_stdin(data_dir):
    payload = {"request": {"sku": "SEAT-CAR-G1", "reason": "damaged_in_transit", "unit_code": "U9"},
               "findings": [{"kind": "dent", "score": 0.9, "view": "side", "box_xyxy": [1, 2, 30, 40]}]}
    proc = station("decide", "--json", "-", data_dir=data_dir, stdin=json.dumps(payload))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["grade"] == "D" and out["disposition"] == "scrap"
    assert "CAT-SAFETY-CRACK-DENT" in out["rules_fired"]
    assert out["findings"][0]["kind"] == "dent"
    assert all("rule" in s for s in out["liability"])


def test_decide_from_file_with_measurements(data_dir, tmp_path):
    payload = {"request": {"sku": "APP-TEE-M", "reason": "colour_difference"},
               "findings": [{"kind": "colour_mismatch", "score": 0.9, "value": 5.2}]}
    path = tmp_path / "case.json"
    path.write_text(json.dumps(payload))
    out = json.loads(station("decide", "--json", str(path), data_dir=data_dir).stdout)
    assert out["liability"] == [{"party": "brand", "share": 1.0, "rule": "L-MFG-COLOUR-BATCH",
                                 "reason": out["liability"][0]["reason"], "evidence": ["finding[0]:colour_mismatch"],
                                 "confidence": 0.85}]


@pytest.mark.parametrize("payload, needle", [
    ("{not json", "invalid decide input"),
    (json.dumps({"request": {"sku": "APP-TEE-M"}}), "request.reason"),
    (json.dumps({"request": {"sku": "APP-TEE-M", "reason": "meh"}}), "unknown reason 'meh'"),
    (json.dumps({"request": {"sku": "X", "reason": "quality_issue"}}), "unknown SKU 'X'"),
    (json.dumps({"request": {"sku": "APP-TEE-M", "reason": "quality_issue"},
                 "findings": [{"kind": "smudge", "score": 0.5}]}), "unknown finding kind"),
    (json.dumps({"request": {"sku": "APP-TEE-M", "reason": "quality_issue"},
                 "findings": [{"kind": "stain", "score": 1.5}]}), "findings[0].score"),
    # Non-finite values are bad input: a NaN ΔE sent items to the vendor with the brand liable.
    ('{"request": {"sku": "APP-TEE-M", "reason": "quality_issue"}, '
     '"findings": [{"kind": "colour_mismatch", "score": 0.9, "value": NaN}]}', "findings[0].value"),
    ('{"request": {"sku": "APP-TEE-M", "reason": "quality_issue"}, '
     '"findings": [{"kind": "colour_mismatch", "score": 0.9, "value": 1e400}]}', "findings[0].value"),
])
def test_decide_bad_input(payload, needle, data_dir):
    assert_clean_error(station("decide", "--json", "-", data_dir=data_dir, stdin=payload), needle)


def test_decide_non_utf8_file_is_a_clean_error(data_dir, tmp_path):
    path = tmp_path / "case.json"
    path.write_bytes(b'{"request": {"sku": "APP-TEE-M", "reason": "quality_issue", "order_id": "\xff\xfe"}}')
    assert_clean_error(station("decide", "--json", str(path), data_dir=data_dir), "not UTF-8")


def test_catalogue_list_json(data_dir):
    proc = station("catalogue", "list", "--json", data_dir=data_dir)
    rows = json.loads(proc.stdout)
    cats = {r["category"] for r in rows}
    assert {"infant_feeding", "infant_safety", "electronics", "apparel", "cosmetics", "toys"} <= cats
    assert len(rows) >= 6
    for r in rows:
        assert set(r) >= {"sku", "category", "brand", "reference_images"}
        assert r["reference_images"] and all(Path(p).is_file() for p in r["reference_images"])


def test_demo_history_export(data_dir, tmp_path):
    proc = station("demo", "--items", "20", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "20 simulated returns" in proc.stdout and "manual review" in proc.stdout
    db = sqlite3.connect(data_dir / "station.db")
    assert db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0] == 20
    # Story 17 returns the unit of story 5 again: history shows both, the second never graded A.
    unit = db.execute("SELECT unit_code FROM inspections GROUP BY unit_code HAVING COUNT(*) > 1").fetchone()[0]
    hist = json.loads(station("history", "--unit-code", unit, "--json", data_dir=data_dir).stdout)
    assert len(hist) == 2 and hist[1]["grade"] != "A"
    assert "CAT-UNIT-SEEN-BEFORE" in hist[1]["decision"]["rules_fired"]
    csv_path = tmp_path / "out.csv"
    assert station("export", "--format", "csv", "--out", str(csv_path), data_dir=data_dir).returncode == 0
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 21 and lines[0].startswith("record_id,")
    jsonl = station("export", "--format", "jsonl", data_dir=data_dir).stdout.splitlines()
    assert len(jsonl) == 20 and all(json.loads(x)["decision"]["rules_fired"] for x in jsonl)
    assert_clean_error(station("export", "--format", "xml", data_dir=data_dir), "unknown format 'xml'")


def test_config_check_reports_every_error_with_its_path(tmp_path, data_dir):
    cfg = tmp_path / "station.toml"
    cfg.write_text('[station]\nid = "bad id!"\nviews = []\n\n[camera]\ntype = "webcam"\n\n'
                   '[detector]\nthreads = 0\nmodle = "x.onnx"\n\n[quality]\nmin_mean = 300\n')
    proc = subprocess.run([sys.executable, "-m", "station.cli", "config", "check", str(cfg)],
                          capture_output=True, text=True)
    assert_clean_error(proc, "station.id", "station.views", "camera: unknown type 'webcam'",
                       "detector.threads", "detector.modle: unknown key", "quality.min_mean", "6 problem")


def test_config_check_follows_referenced_files(tmp_path):
    cfg = tmp_path / "station.toml"
    (tmp_path / "rules.toml").write_text('[[grading]]\nid = "X"\ngrade = "Z"\n')
    cfg.write_text('[rules]\nfile = "rules.toml"\n\n[detector]\nmodel = "missing.onnx"\n')
    proc = subprocess.run([sys.executable, "-m", "station.cli", "config", "check", str(cfg)],
                          capture_output=True, text=True)
    assert_clean_error(proc, "rules.file:", "grading[0](id=X).grade", "detector.model:", "not found")


def test_config_check_ok_and_broken_toml(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[station]\nid = "bench-3"\n\n[camera]\ntype = "folder"\npath = "shots"\n')
    proc = subprocess.run([sys.executable, "-m", "station.cli", "config", "check", str(good)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[station\nid=1")
    proc = subprocess.run([sys.executable, "-m", "station.cli", "config", "check", str(bad)],
                          capture_output=True, text=True)
    assert_clean_error(proc, "not valid TOML")


def test_broken_config_on_any_command_is_a_clean_error(data_dir, tmp_path):
    cfg = tmp_path / "station.toml"
    cfg.write_text('[conveyor]\ntype = "teleporter"\n')
    assert_clean_error(station("catalogue", "list", data_dir=data_dir, config=cfg), "conveyor: unknown type")


def test_corrupt_model_at_startup_is_a_clean_error(data_dir, tmp_path, item_images):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"garbage")
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[detector]\nmodel = "{bad}"\n')
    proc = station("inspect", "--sku", "GAD-EARBUD-X2", "--reason", "quality_issue", str(item_images[0]),
                   data_dir=data_dir, config=cfg)
    assert_clean_error(proc, "not a loadable ONNX model")


def test_catalogue_import(tmp_path, data_dir):
    src = tmp_path / "cat"
    (src / "img").mkdir(parents=True)
    cv2.imwrite(str(src / "img" / "a.png"), np.full((50, 50, 3), 80, np.uint8))
    (src / "catalogue.csv").write_text("sku,category,brand,image,hygiene\nNEW-1,household,acme,img/a.png,false\n")
    proc = station("catalogue", "import", str(src), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert (data_dir / "catalogue" / "catalogue.csv").exists()
    assert "1 newly indexed" in proc.stdout and "uses it from now on" in proc.stdout
    # The imported catalogue is the one the station uses, without editing the config.
    listed = station("catalogue", "list", data_dir=data_dir)
    assert "NEW-1" in listed.stdout and "GAD-EARBUD-X2" not in listed.stdout
    # Adding a SKU embeds only its view: the first one's embedding comes from the persisted index.
    cv2.imwrite(str(src / "img" / "b.png"), np.full((60, 40, 3), 160, np.uint8))
    (src / "catalogue.csv").write_text("sku,category,brand,image\nNEW-1,household,acme,img/a.png\n"
                                       "NEW-3,household,acme,img/b.png\n")
    proc = station("catalogue", "import", str(src), data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "2 views, 1 newly indexed" in proc.stdout
    (src / "catalogue.csv").write_text("sku,category,brand,image\nNEW-2,household,acme,img/missing.png\n")
    assert_clean_error(station("catalogue", "import", str(src), data_dir=data_dir), "catalogue.csv:2", "not found")
