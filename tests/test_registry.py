"""Model registry: versions with their cards, activation per station, rollback, and boot picking the active one."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest
import yaml

from models.registry import ModelRegistry, RegistryError, load_registered, resolve_model
from station.app import make_detector
from station.config import BUNDLED_MODEL, StationConfig, StationSection


def model_with_confidence(dest_dir, name: str, confidence: float):
    """A copy of the bundled model whose card sets another operating threshold."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    onnx = dest_dir / f"{name}.onnx"
    shutil.copyfile(BUNDLED_MODEL, onnx)
    card = yaml.safe_load(BUNDLED_MODEL.with_suffix(".yaml").read_text())
    card["thresholds"]["confidence"] = confidence
    onnx.with_suffix(".yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return onnx


@pytest.fixture()
def models_dir(tmp_path):
    return tmp_path / "incoming"


def test_register_copies_model_and_card_and_names_the_version(tmp_path, models_dir):
    a = model_with_confidence(models_dir, "a", 0.25)
    with ModelRegistry(tmp_path / "data") as reg:
        entry = reg.register(a)
        assert entry.version.startswith("defects-") and len(entry.version) == len("defects-") + 10
        assert entry.path == tmp_path / "data" / "models" / entry.version / "model.onnx"
        assert entry.path.read_bytes() == a.read_bytes()
        assert yaml.safe_load(entry.path.with_suffix(".yaml").read_text())["thresholds"]["confidence"] == 0.25
        assert reg.register(a).version == entry.version  # same file again: same entry
        # The same weights with another threshold are another model, so another version.
        b = model_with_confidence(models_dir / "b", "a", 0.6)
        assert reg.register(b).version != entry.version
        with pytest.raises(RegistryError, match="already registered for another file"):
            reg.register(b, version=entry.version)
        with pytest.raises(RegistryError, match="letters, digits"):
            reg.register(a, version="bad version!")
        (models_dir / "nocard.onnx").write_bytes(a.read_bytes())
        with pytest.raises(RegistryError, match="no model card"):
            reg.register(models_dir / "nocard.onnx")
        (models_dir / "junk.onnx").write_bytes(b"not a model")
        (models_dir / "junk.yaml").write_text("name: junk\n")
        with pytest.raises(RegistryError, match="not a loadable ONNX"):
            reg.register(models_dir / "junk.onnx")
        assert [e.version for e in reg.list()] == [entry.version, reg.register(b).version]


def test_activate_and_rollback_are_a_stack_per_station(tmp_path, models_dir):
    a, b = model_with_confidence(models_dir, "a", 0.25), model_with_confidence(models_dir / "b", "b", 0.5)
    with ModelRegistry(tmp_path / "data") as reg:
        va, vb = reg.register(a, "v1").version, reg.register(b, "v2").version
        assert reg.active("st-1") is None
        with pytest.raises(RegistryError, match="nothing to roll back"):
            reg.rollback("st-1")
        reg.activate(va, "st-1")
        reg.activate(vb, "st-1")
        reg.activate(va, "st-2")
        assert reg.active("st-1").version == vb and reg.active("st-2").version == va
        assert reg.rollback("st-1").version == va  # back to the one before
        assert reg.active("st-1").version == va
        assert reg.rollback("st-1") is None  # and then to the configured model
        assert reg.active("st-1") is None and reg.active("st-2").version == va
        assert [h["kind"] for h in reg.history("st-1")] == ["activate", "activate", "rollback", "rollback"]
        with pytest.raises(RegistryError, match="not in the registry"):
            reg.activate("v9", "st-1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            reg.db.execute("DELETE FROM activations")
        path, version = resolve_model(reg, "v2")
        assert version == "v2" and path.name == "model.onnx"
        assert resolve_model(reg, str(a)) == (a, "a")
        with pytest.raises(RegistryError, match="neither"):
            resolve_model(reg, "nope")


def test_loaded_model_reports_the_registry_version(tmp_path, models_dir):
    with ModelRegistry(tmp_path / "data") as reg:
        entry = reg.register(model_with_confidence(models_dir, "a", 0.4), "line-7")
    det = load_registered(entry)
    assert det.version == "line-7" and det.confidence == 0.4


def test_boot_uses_the_active_version_else_the_configured_model(tmp_path, models_dir):
    data = tmp_path / "data"
    cfg = StationConfig(station=StationSection(data_dir=data))
    assert make_detector(cfg).model_path == BUNDLED_MODEL
    assert not (data / "models").exists()  # boot does not create a registry
    with ModelRegistry(data) as reg:
        reg.activate(reg.register(model_with_confidence(models_dir, "a", 0.3), "v1").version, cfg.station.id)
    det = make_detector(cfg)
    assert det.version == "v1" and det.model_path == data / "models" / "v1" / "model.onnx"
    off = cfg.model_copy(update={"models": cfg.models.model_copy(update={"registry": False})})
    assert make_detector(off).model_path == BUNDLED_MODEL
    # The station's detector.input_size applies to the registry's model too (it used to take the card's only).
    assert det.input_size == (416, 416)
    sized = cfg.model_copy(update={"detector": cfg.detector.model_copy(update={"input_size": 320})})
    assert make_detector(sized).input_size == (320, 320)


def test_cli_list_activate_rollback_and_clean_errors(tmp_path, models_dir):
    a = model_with_confidence(models_dir, "a", 0.25)
    data = str(tmp_path / "data")

    def station(*args):
        return subprocess.run([sys.executable, "-m", "station.cli", *args, "--data-dir", data],
                              capture_output=True, text=True, timeout=120)

    proc = station("model", "register", str(a), "--version", "v1")
    assert proc.returncode == 0, proc.stderr
    for bad in (("model", "activate", "v2"), ("model", "rollback"), ("model", "register", str(tmp_path / "x.onnx"))):
        proc = station(*bad)
        assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert station("model", "activate", "v1").returncode == 0
    import json

    listing = json.loads(station("model", "list", "--json").stdout)
    assert listing["active"] == "v1" and [m["version"] for m in listing["models"] if m["active"]] == ["v1"]
    card = yaml.safe_load(a.with_suffix(".yaml").read_text())
    assert listing["models"][0]["metrics_test"]["heldout"]["mAP50"] == card["metrics_test"]["heldout"]["mAP50"]
    assert str(card["metrics_test"]["heldout"]["mAP50"]) in station("model", "list").stdout  # the table shows it
    assert station("model", "rollback").returncode == 0
    assert json.loads(station("model", "list", "--json").stdout)["active"] is None


def test_shadow_candidate_runs_beside_the_active_model_without_deciding(tmp_path, models_dir, data_dir):
    """models.shadow wires a registered candidate at boot; records keep the active version; disagreements land
    in <data_dir>/models/shadow.db and `station model shadow --json` lists them."""
    import json

    from models.shadow import ShadowDetector, ShadowLog
    from station.app import boot
    from station.demo import simulated_returns

    cfg = StationConfig(station=StationSection(data_dir=data_dir))
    with ModelRegistry(data_dir) as reg:
        reg.activate(reg.register(model_with_confidence(models_dir, "a", 0.25), "v1").version, cfg.station.id)
        reg.register(model_with_confidence(models_dir / "b", "b", 0.01), "eager")  # sees boxes everywhere
    cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"shadow": "eager"})})
    station = boot(cfg)
    try:
        assert isinstance(station.pipeline.detector, ShadowDetector)
        records = []
        for sim in simulated_returns(6, seed=2):
            station.camera.stage(sim.staged)
            frames = [station.camera.capture(v) for v in cfg.station.views]
            records.append(station.pipeline.inspect(sim.request, frames).record)
            station.pipeline.detector.flush(60)  # let the candidate finish so every item is compared
        shadow = station.pipeline.detector
    finally:
        station.close()
    assert {r.model_version for r in records} == {"v1"}
    assert shadow.compared == 6 and shadow.disagreements > 0
    rows = ShadowLog(data_dir / "models" / "shadow.db").rows()
    assert len(rows) == shadow.disagreements
    assert {(r["active_version"], r["candidate_version"]) for r in rows} == {("v1", "eager")}
    assert all(r["only_candidate"] for r in rows)
    proc = subprocess.run([sys.executable, "-m", "station.cli", "model", "shadow", "--json", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["disagreements"]) == len(rows)
    bad = cfg.model_copy(update={"models": cfg.models.model_copy(update={"shadow": "nope"})})
    from models.onnx_yolo import ModelError

    with pytest.raises(ModelError, match="not in the registry"):
        make_detector(bad)
