"""The learning loop end to end (issue 9), with real learning.

A deliberately weak model (the shipped weights made blind to tear and stain by models.training.weaken) decides
generated items and misses those defects; a supervisor corrects every item's boxes; the corrections are
exported; a fine-tune starting FROM THE WEAK WEIGHTS (CPU, a few epochs on the exported images at 320 px)
learns the two classes back (their recall on the frozen golden set rises from 0 to 0.75-1.0, with the same
operating threshold as the weak model). Run in shadow beside the weak model on live items, the candidate's
disagreements (the tears and stains it adds) name the records they came from, and it decides nothing. The
promotion gate promotes it, and refuses the weak model when it is proposed again (recall drops, exit 1, nothing
changes). Rollback restores the weak model and every record names the model that decided it.
Measured (2 busy CPU cores): about 100-120 s, of which the fine-tune is about 40 s.

Needs the [train] extra and the shipped weights (models/weights/defects.pt); skipped with a reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from models.dataset import DatasetSpec, render_sample, write_dataset
from models.registry import ModelRegistry
from station.app import boot
from station.config import BUNDLED_MODEL, StationConfig, StationSection
from station.domain import Frame, ReturnReason, ReturnRequest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None
    or not BUNDLED_MODEL.with_suffix(".pt").exists(),
    reason="needs the training extra (make train-deps) and the shipped weights models/weights/defects.pt",
)

SKUS = ("APP-TEE-M", "GAD-EARBUD-X2", "TOY-BEAR-S", "HH-KETTLE-1L")
DAMAGED = ("tear", "stain")  # the classes the weak model cannot see
ITEMS = 30  # inspected and corrected on the line: 60 views (with 20 the fine-tune forgets more of the others)
# The fine-tune: pinned SGD (optimizer "auto" would pick AdamW with a tiny lr for a run this short and ignore lr0),
# the biases at warmup_bias_lr through the (whole, 100-step minimum) warmup so the blinded classes' biases come
# back; the export names files by content, so the run is reproducible; everything but the classification outputs
# of the Detect head (cv3.*.2) stays fixed, so ten epochs on a few dozen corrected views re-learn the blinded
# classes and unlearn little of the rest. The last epoch is exported: "best" by the few validation views picked
# the first epoch (still blind) with the stage-4 weights.
FINETUNE = {"epochs": 10, "batch": 8, "optimizer": "SGD", "lr0": 0.01, "warmup_epochs": 1.0, "warmup_bias_lr": 0.1,
            "mosaic": 0.0, "checkpoint": "last"}
FREEZE = [*range(22), "22.cv2", *(f"22.cv3.{s}.{k}" for s in range(3) for k in range(2))]
# Such a short fine-tune on 60 views still moves the other classes a little: measured drops of one or two labels
# (up to 0.08 in recall with 14-24 labels per class), so the gate here allows 0.15 instead of the default 0.05.
# The weak model's tear and stain recall is 0 and comes back to 0.7-1.0: far outside any tolerance.
GATE_POLICY = ["--recall-tolerance", "0.2"]


def _toml(pt, settings: dict) -> str:
    def val(v):
        return json.dumps(v)  # TOML accepts JSON numbers, strings and flat arrays

    body = "\n".join(f"{k} = {val(v)}" for k, v in settings.items())
    return f'name = "line"\n[train]\nmodel = {json.dumps(str(pt))}\nimgsz = 320\nworkers = 0\ncache = false\n' \
           f'freeze = {val(FREEZE)}\n{body}\n'


def _inspect(cfg, rng, spec, n: int, first: int) -> list[tuple[str, list[dict]]]:
    """Inspect n generated items (two views each); return (record id, true boxes) per item."""
    station = boot(cfg)
    out = []
    try:
        for i in range(first, first + n):
            frames, truth = [], []
            for view in ("front", "side"):
                item = render_sample(rng, i * 2 + len(frames), spec)
                frames.append(Frame(item.image, view))
                truth += [{"view": view, "class": name, "box_xyxy": list(map(float, box))}
                          for name, box in item.boxes()]
            req = ReturnRequest(f"ord-{i}", SKUS[i % len(SKUS)], ReturnReason.QUALITY_ISSUE, unit_code=f"unit-{i}")
            res = station.pipeline.inspect(req, frames, operator="line")
            getattr(station.pipeline.detector, "flush", lambda _: None)(60)  # a shadow candidate sees every item
            out.append((res.record.record_id, truth))
    finally:
        station.close()
    return out


def test_weak_model_corrections_finetune_gate_and_rollback(tmp_path, data_dir):
    from models.training.weaken import weaken

    data = str(data_dir)

    def station(*args, check=True):
        proc = subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
        if check:
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    # 1. A genuinely weak model: the shipped weights with tear and stain switched off in the Detect head.
    base = tmp_path / "base" / "defects.pt"
    base.parent.mkdir()
    shutil.copyfile(BUNDLED_MODEL.with_suffix(".pt"), base)
    shutil.copyfile(BUNDLED_MODEL.with_suffix(".yaml"), base.with_suffix(".yaml"))
    weak = weaken(base, DAMAGED, tmp_path / "weak" / "weak.onnx")
    weak_card = yaml.safe_load(weak.with_suffix(".yaml").read_text())
    assert weak_card["weakened"]["classes"] == list(DAMAGED)
    station("model", "register", str(weak), "--version", "weak-1", "--data-dir", data)
    station("model", "activate", "weak-1", "--reason", "test", "--data-dir", data)

    # 2. It inspects generated items and misses the damaged classes; a supervisor corrects every item's boxes.
    cfg = StationConfig(station=StationSection(data_dir=data_dir))
    spec = DatasetSpec(size=320, clean_share=0.15)
    rng = np.random.default_rng(11)
    items = _inspect(cfg, rng, spec, ITEMS, 0)
    from station.records import StationStore

    with StationStore(cfg.database_path(), min_free_bytes=0) as store:
        found = [f["kind"] for r, _ in items for f in json.loads(store.get(r)["findings_json"])
                 if f["source"] == "detector"]
        true = [b["class"] for _, t in items for b in t]
        assert sum(c in DAMAGED for c in true) >= 6, "the line should show the weak model some tears and stains"
        assert not any(c in DAMAGED for c in found), "the weak model should not see tears or stains"
        assert any(c not in DAMAGED for c in found), "but it should still see the other defects"
        for rid, truth in items:
            store.override_boxes(rid, "supervisor-1", "boxes corrected in review", truth)

    # 3. Export the corrections as a YOLO dataset.
    export = tmp_path / "export"
    # val share 0.15: with these 30 unit codes 0.2+ puts most of the stains in val (splits are by unit code hash).
    man = json.loads(station("dataset", "export", str(export), "--val-share", "0.15", "--json",
                             "--data-dir", data).stdout)
    assert man["images"] == 2 * ITEMS and man["splits"]["val"]["images"] >= 2
    assert all(man["splits"]["train"]["boxes"][c] > 0 for c in DAMAGED)
    files = json.loads((export / "manifest.json").read_text())["files"]
    assert all(f["labels_from"] == "override" for f in files)
    assert len({f["split"] for f in files if f["record_id"] == items[0][0]}) == 1  # both views, one split

    # 4. Fine-tune briefly on it (CPU, 320 px), starting from the weak weights; the card keeps the weak threshold.
    (tmp_path / "ft.toml").write_text(_toml(weak.with_suffix(".pt"), FINETUNE))
    new = tmp_path / "line.onnx"
    station("model", "finetune", str(tmp_path / "ft.toml"), "--dataset", str(export), "--out", str(new),
            "--workdir", str(tmp_path / "ftwork"))
    card = yaml.safe_load(new.with_suffix(".yaml").read_text())
    assert card["dataset"]["sha256"] == man["sha256"]  # trained on exactly the export
    assert card["training"]["config"]["train"]["model"] == str(weak.with_suffix(".pt"))
    assert card["thresholds"]["confidence"] == weak_card["thresholds"]["confidence"]

    # 5. On the frozen golden set alone, with the same operating threshold, the damaged classes came back.
    golden = tmp_path / "golden"
    write_dataset(golden, DatasetSpec(train=0, val=0, test=48, seed=99, size=320))
    gate_args = ["--golden", str(golden), "--min-instances", "3", "--max-latency-ratio", "5", "--json",
                 "--data-dir", data, *GATE_POLICY]
    proc = station("model", "evaluate", str(new), "--against", "weak-1", "--no-overrides", *gate_args, check=False)
    per = {c["class"]: c for c in json.loads(proc.stdout)["per_class"]}
    print("golden only, weak-1 -> fine-tuned:", {k: (c["active_recall"], c["new_recall"]) for k, c in per.items()})
    for c in DAMAGED:
        assert per[c]["instances"] >= 5 and per[c]["active_recall"] <= 0.1 and per[c]["new_recall"] >= 0.4, per[c]

    # 6. Shadow mode: registered, it runs beside the weak model on live items without deciding; its disagreements
    # name the records they came from, and it finds the tears and stains the active model misses.
    station("model", "register", str(new), "--version", "line-2", "--data-dir", data)
    shadowed = _inspect(cfg.model_copy(update={"models": cfg.models.model_copy(update={"shadow": "line-2"})}),
                        rng, spec, 4, 50)
    rows = json.loads(station("model", "shadow", "--json", "--data-dir", data).stdout)["disagreements"]
    assert rows and {r["record_id"] for r in rows} <= {r for r, _ in shadowed}
    assert {(r["active_version"], r["candidate_version"]) for r in rows} == {("weak-1", "line-2")}
    truth = {(rid, k): {b["class"] for b in t if b["view"] == v} for rid, t in shadowed
             for k, v in enumerate(("front", "side"))}
    # A tear or stain the candidate adds, really on the view of the record the disagreement names.
    hits = [b["class"] for r in rows for b in r["only_candidate"]
            if b["class"] in DAMAGED and b["class"] in truth[(r["record_id"], r["view_index"])]]
    assert hits or not any(c in DAMAGED for t in truth.values() for c in t), rows

    # 7. The gate (golden set + the corrected items) promotes it: the damaged classes' recall rose from ~0, and no
    # class fell beyond the tolerance.
    proc = station("model", "promote", "line-2", "--out", str(tmp_path / "plots"), *gate_args, check=False)
    rep = json.loads(proc.stdout)
    per = {c["class"]: c for c in rep["per_class"]}
    print("gate weak-1 -> line-2:", {k: (c["active_recall"], c["new_recall"]) for k, c in per.items()})
    assert proc.returncode == 0, rep["reasons"]
    assert rep["decision"] == "promote" and rep["promoted"] == "line-2" and rep["reasons"] == []
    assert rep["active"]["version"] == "weak-1" and rep["override_images"] == 2 * ITEMS and rep["golden_images"] == 48
    for c in DAMAGED:
        assert per[c]["gated"] and per[c]["active_recall"] <= 0.1 and per[c]["new_recall"] >= 0.4, per[c]
    assert rep["mAP50"]["new"] > rep["mAP50"]["active"]
    assert (tmp_path / "plots" / "new" / "pr_curves.png").stat().st_size > 1000

    more = _inspect(cfg, rng, spec, 2, 100)

    # 8. A worse candidate, the weak model proposed again, is refused (exit 1, with the reasons); nothing changes.
    proc = station("model", "promote", "weak-1", *gate_args, check=False)
    assert proc.returncode == 1, proc.stderr
    refused = json.loads(proc.stdout)
    assert refused["decision"] == "refuse" and refused["promoted"] is None
    assert refused["active"]["version"] == "line-2"
    for c in DAMAGED:
        assert any(r.startswith(f"recall of {c} drops") for r in refused["reasons"]), refused["reasons"]
    with ModelRegistry(data_dir) as reg:
        assert reg.active(cfg.station.id).version == "line-2"

    # 9. Rollback restores the weak model; the records show which model decided each item.
    station("model", "rollback", "--reason", "test", "--data-dir", data)
    last = _inspect(cfg, rng, spec, 1, 200)
    with StationStore(cfg.database_path(), min_free_bytes=0) as store:
        version = {r["record_id"]: r["model_version"] for r in store.rows()}
        overrides = list(store.rows("WHERE overrides IS NOT NULL"))
    assert {version[r] for r, _ in items + shadowed} == {"weak-1"}  # the shadow never decided
    assert {version[r] for r, _ in more} == {"line-2"}
    assert {version[r] for r, _ in last} == {"weak-1"}
    assert len(overrides) == ITEMS and {o["operator"] for o in overrides} == {"supervisor-1"}
    assert {o["overrides"] for o in overrides} == {r for r, _ in items}
