"""Weight evidence in the decision (issue 24): the real pipeline (ONNX detector, comparer, rules, SQLite) with the
MT-SICS scale simulator on a pty; the catalogue's weight_g column; the [scale] config section."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources

import cv2
import pytest

from hardware.scale import MtSicsScale
from hardware.scale_sim import ScaleSimulator
from station.app import boot, make_scale
from station.config import ConfigError, StationConfig, load_config
from station.domain import CatalogueItem, Disposition, Grade, ReturnReason, ReturnRequest
from station.records import measurements_of
from station.rules.engine import RuleSet, RulesEngine, RulesError, WeightVerdict
from vision.camera import StagedItem
from vision.catalogue import Catalogue, CatalogueError

EARBUDS = "GAD-EARBUD-X2"  # 180 g in the sample catalogue; electronics: tolerance max(5 g, 3 %) = 5.4 g
CLEAN_EARBUDS = StagedItem(EARBUDS, {}, 1167425779)  # the demo's "earbuds returned as new" rendering
EARBUDS_IN_KETTLE_BOX = StagedItem(EARBUDS, {}, 17790420)  # the demo's "kettle swapped for a cheaper box"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, sample_catalogue_dir):
    root = tmp_path_factory.mktemp("scale-station")
    shutil.copytree(sample_catalogue_dir, root / "data" / "sample_catalogue")
    sim = ScaleSimulator(root / "scale", weight_g=180.0, stable_wait_s=0.05).start()
    cfg = StationConfig.model_validate({
        "station": {"data_dir": str(root / "data")},
        "scale": {"type": "mtsics", "url": str(root / "scale"), "command_timeout_s": 0.3, "stable_timeout_s": 0.6},
    })
    station = boot(cfg)
    yield station, sim
    station.close()
    sim.close()


@pytest.fixture()
def station(rig):
    station, sim = rig
    sim.replug()
    sim.set_unstable(False)
    sim.set_silent(False)
    yield station
    station.pipeline.review_when_unweighed = False


@pytest.fixture()
def sim(rig):
    return rig[1]


_orders = iter(range(10_000))


def inspect(station, staged, sku=EARBUDS, reason=ReturnReason.NO_REASON_7DAY):
    n = next(_orders)
    station.camera.stage(staged)
    frames = [station.camera.capture(v) for v in station.config.station.views]
    request = ReturnRequest(f"W-{n}", sku, reason, unit_code=f"UW{n}", brand="b")
    return station.pipeline.inspect(request, frames, operator="test")


def stored_weight(station, result) -> dict:
    row = next(iter(station.store.rows("WHERE record_id = ?", (result.record.record_id,))))
    return measurements_of(row)["weight"]


def test_a_weight_within_tolerance_passes(station, sim):
    sim.set_weight(182.5)
    res = inspect(station, CLEAN_EARBUDS)
    d = res.record.decision
    assert (d.grade, d.disposition) == (Grade.A, Disposition.RESTOCK)
    assert "W-WEIGHT-OK" in d.rules_fired and not any(f.kind == "missing_part" for f in res.findings)
    w = stored_weight(station, res)  # in the signed record's measurements
    assert w["state"] == "measured" and w["grams"] == 182.5 and w["expected_g"] == 180.0
    assert w["verdict"] == "within_tolerance" and w["tolerance_g"] == pytest.approx(5.4)
    assert res.to_json()["weight"] == w  # and in inspect --json
    assert "weigh" in res.record.timings_ms


def test_a_missing_30_g_part_is_found(station, sim):
    sim.set_weight(150.0)
    res = inspect(station, CLEAN_EARBUDS)
    d = res.record.decision
    missing = [f for f in res.findings if f.kind == "missing_part"]
    assert len(missing) == 1 and missing[0].view is None
    assert missing[0].value == pytest.approx(30 / 180, abs=1e-3)  # the missing share of the unit weight
    assert "30.0 g" in missing[0].detail and "180 g" in missing[0].detail
    assert missing[0].score == 1.0  # 30 g is far beyond 5.4 g
    assert d.grade == Grade.C and "G-MISSING-PART" in d.rules_fired
    assert d.disposition not in (Disposition.RESTOCK, Disposition.OPEN_BOX)
    assert stored_weight(station, res)["verdict"] == "light"
    row = next(iter(station.store.rows("WHERE record_id = ?", (res.record.record_id,))))
    assert "missing_part" in row["findings_json"]


def test_a_disconnected_scale_gives_a_clear_state_and_never_blocks_the_decision(station, sim):
    sim.unplug()
    res = inspect(station, CLEAN_EARBUDS)
    d = res.record.decision
    assert (d.grade, d.disposition) == (Grade.A, Disposition.RESTOCK)  # decided on what was seen
    assert "W-SCALE-UNAVAILABLE" in d.rules_fired
    reason = next(r for r in d.reasons if r.startswith("W-SCALE-UNAVAILABLE"))
    assert "scale unavailable (absent" in reason and "not graded on weight" in reason
    w = stored_weight(station, res)
    assert w["state"] == "unavailable" and w["scale_state"] == "absent" and w["grams"] is None
    assert w["elapsed_ms"] < 3000  # gave up within its timeouts (0.3 s command, 0.6 s stable), the item went on


def test_an_unstable_scale_is_unavailable_too(station, sim):
    sim.set_unstable(True)
    res = inspect(station, CLEAN_EARBUDS)
    assert res.record.decision.grade == Grade.A and "W-SCALE-UNAVAILABLE" in res.record.decision.rules_fired
    assert stored_weight(station, res)["scale_state"] == "unstable"


def test_review_when_unavailable_sends_an_unweighed_item_to_a_supervisor(station, sim):
    station.pipeline.review_when_unweighed = True
    sim.set_silent(True)
    res = inspect(station, CLEAN_EARBUDS)
    d = res.record.decision
    assert d.review and d.disposition == Disposition.MANUAL_REVIEW and d.proposed_disposition == Disposition.RESTOCK


def test_an_item_heavier_than_its_sku_goes_to_a_supervisor(station, sim):
    sim.set_weight(240.0)
    res = inspect(station, CLEAN_EARBUDS)
    d = res.record.decision
    assert d.review and d.disposition == Disposition.MANUAL_REVIEW and "W-OVERWEIGHT" in d.rules_fired
    assert stored_weight(station, res)["verdict"] == "heavy"


def test_a_swap_the_camera_saw_is_corroborated_by_the_weight(station, sim):
    sim.set_weight(180.0)  # earbuds in a kettle return (kettle: 1150 g)
    res = inspect(station, EARBUDS_IN_KETTLE_BOX, sku="HH-KETTLE-1L", reason=ReturnReason.QUALITY_ISSUE)
    wrong = [f for f in res.findings if f.kind == "wrong_item"]
    by_weight = [f for f in wrong if "weighs 180.0 g" in f.detail]
    assert by_weight and EARBUDS in by_weight[0].detail
    assert not any(f.kind == "missing_part" for f in res.findings)  # another SKU, not a kettle short of 970 g
    d = res.record.decision
    assert d.disposition == Disposition.MANUAL_REVIEW and d.liability[0].rule == "L-SWAP"
    assert stored_weight(station, res)["weighs_like"][0]["sku"] == EARBUDS


def test_without_a_scale_section_nothing_changes(station, sim):
    scale, station.pipeline.scale = station.pipeline.scale, None
    try:
        sim.set_weight(1.0)  # would be "empty pan" if it were asked
        res = inspect(station, CLEAN_EARBUDS)
    finally:
        station.pipeline.scale = scale
    assert res.weight is None and res.to_json()["weight"] is None
    row = next(iter(station.store.rows("WHERE record_id = ?", (res.record.record_id,))))
    assert "weight" not in measurements_of(row)
    assert not any(r.startswith("W-") for r in res.record.decision.rules_fired)
    assert "weigh" not in res.record.timings_ms


def test_inspect_json_carries_the_weight(tmp_path, sample_catalogue_dir, sim):
    sim.replug()
    sim.set_weight(150.0)
    shutil.copytree(sample_catalogue_dir, tmp_path / "data" / "sample_catalogue")
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[station]\ndata_dir = "data"\n\n[scale]\ntype = "mtsics"\nurl = "{sim.port_path}"\n')
    images = []
    for view in ("front", "side", "top"):
        p = tmp_path / f"{view}.png"
        cv2.imwrite(str(p), cv2.imread(str(sample_catalogue_dir / "images" / f"{EARBUDS}_{view}.png")))
        images.append(str(p))
    proc = subprocess.run([sys.executable, "-m", "station.cli", "inspect", "--json", "--sku", EARBUDS, "--reason",
                           "no_reason_7day", "--config", str(cfg), *images], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["weight"]["grams"] == 150.0 and out["weight"]["verdict"] == "light"
    assert any(f["kind"] == "missing_part" and f["value"] == pytest.approx(0.1667, abs=1e-3) for f in out["findings"])


# ------------------------------------------------------------------------------------------ rules


def _item(sku="X", category="electronics"):
    return CatalogueItem(sku, category, "b")


def test_tolerance_is_the_larger_of_grams_and_share_per_category():
    engine = RulesEngine(RuleSet.load())
    assert engine.weight_tolerance_g("electronics", 100) == 5.0  # 3 % would be 3 g
    assert engine.weight_tolerance_g("electronics", 1000) == pytest.approx(30.0)
    assert engine.weight_tolerance_g("apparel", 210) == pytest.approx(10.5)  # garments: 5 %
    assert engine.weight_tolerance_g("made_up_category", 100) == 5.0  # unknown categories get the default
    check = engine.check_weight(_item(), 94.0, 100.0)
    assert check.verdict is WeightVerdict.LIGHT and check.findings[0].kind == "missing_part"
    assert engine.check_weight(_item(), 95.0, 100.0).verdict is WeightVerdict.WITHIN  # at the tolerance: passes
    assert engine.check_weight(_item(), 106.0, 100.0).findings == ()  # heavy: no finding, the pipeline asks a person


def test_a_site_sets_its_own_weight_tolerances(tmp_path):
    text = resources.files("station.rules").joinpath("default_rules.toml").read_text(encoding="utf-8")
    text = text.replace("weight_tolerance = { default = { grams = 5.0, share = 0.03 }",
                        "weight_tolerance = { default = { grams = 1.0, share = 0.0 }")
    engine = RulesEngine(RuleSet.from_toml_text(text))
    assert engine.check_weight(_item(), 97.0, 100.0).verdict is WeightVerdict.LIGHT
    with pytest.raises(RulesError, match="settings.weight_tolerance.default.share"):
        RuleSet.from_toml_text(text.replace("grams = 1.0, share = 0.0", "grams = 1.0, share = 2.0"))


def test_the_weight_of_another_sku_is_named_as_a_hint():
    engine = RulesEngine(RuleSet.load())
    weights = {"X": 300.0, "Y": 200.0, "Z": 500.0}
    check = engine.check_weight(_item("X"), 201.0, 300.0, weights, {"Y": "electronics"})
    assert check.matches == (("Y", 200.0),)
    assert [f.kind for f in check.findings] == ["missing_part"]  # the camera did not say Y: weight alone names no swap
    assert "weighs what Y weighs" in check.findings[0].detail
    swap = engine.check_weight(_item("X"), 201.0, 300.0, weights, {"Y": "electronics"}, identity_best_match="Y")
    assert [f.kind for f in swap.findings] == ["wrong_item"]


# ------------------------------------------------------------------------------------------ catalogue, config


def test_sample_catalogue_has_unit_weights(sample_catalogue_dir):
    cat = Catalogue.load(sample_catalogue_dir)
    assert cat.unit_weight_g(EARBUDS) == 180.0 and len(cat.unit_weights_g) == len(cat.items)


@pytest.mark.parametrize("value, says", [("-3", "above 0"), ("0", "above 0"), ("nan", "finite"), ("1e9", "at most"),
                                         ("heavy", "must be a number")])
def test_catalogue_weight_g_is_validated(tmp_path, sample_catalogue_dir, value, says):
    shutil.copytree(sample_catalogue_dir / "images", tmp_path / "images")
    (tmp_path / "catalogue.csv").write_text(
        f"sku,category,brand,image,weight_g\nA,toys,b,images/{EARBUDS}_front.png,{value}\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=says) as exc:
        Catalogue.load(tmp_path)
    assert "catalogue.csv:2" in str(exc.value) and "weight_g" in str(exc.value)


def test_two_weights_for_one_sku_are_refused(tmp_path, sample_catalogue_dir):
    shutil.copytree(sample_catalogue_dir / "images", tmp_path / "images")
    (tmp_path / "catalogue.csv").write_text(
        "sku,category,brand,image,weight_g\n"
        f"A,toys,b,images/{EARBUDS}_front.png,100\nA,toys,b,images/{EARBUDS}_side.png,120\n"
        f"B,toys,b,images/{EARBUDS}_top.png,\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match="catalogue.csv:3.*differs from 100 on line 2"):
        Catalogue.load(tmp_path)
    (tmp_path / "catalogue.csv").write_text(
        "sku,category,brand,image,weight_g\n"
        f"A,toys,b,images/{EARBUDS}_front.png,100\nA,toys,b,images/{EARBUDS}_side.png,\n"
        f"B,toys,b,images/{EARBUDS}_top.png,\n", encoding="utf-8")
    cat = Catalogue.load(tmp_path)
    assert cat.unit_weight_g("A") == 100.0 and cat.unit_weight_g("B") is None


def test_scale_config_section(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[scale]\ntype = "mtsics"\nurl = "/dev/ttyUSB3"\nstable_timeout_s = 2.5\n')
    cfg = load_config(good)
    scale = make_scale(cfg)
    assert isinstance(scale, MtSicsScale) and scale.url == "/dev/ttyUSB3" and scale.stable_timeout_s == 2.5
    assert not scale.connected  # nothing opened at boot
    assert make_scale(load_config(None)) is None
    for body, says in (('type = "mtsics"\n', "scale.url: Field required"),
                       ('type = "mettler"\nurl = "x"\n', "unknown type 'mettler'"),
                       ('type = "mtsics"\nurl = "x"\nstable_timeout_s = 0\n', "scale.stable_timeout_s"),
                       ('type = "mtsics"\nurl = "x"\ntolerance = 3\n', "scale.tolerance: unknown key")):
        bad = tmp_path / "bad.toml"
        bad.write_text("[scale]\n" + body)
        with pytest.raises(ConfigError) as exc:
            load_config(bad)
        assert says in str(exc.value), str(exc.value)


def test_the_demo_story_of_a_light_box_is_decided_as_told_when_weighed(station):
    from station.demo import STORIES, DemoScale, simulated_returns

    sims = simulated_returns(len(STORIES))
    light = next(s for s in sims if s.story == "light earbuds box, a 30 g part missing")
    assert light.weight_g == 150.0 and sims[:24] == simulated_returns(24)  # the default demo is unchanged
    demo_scale = DemoScale()
    scale, station.pipeline.scale = station.pipeline.scale, demo_scale
    try:
        demo_scale.put(light.weight_g)
        station.camera.stage(light.staged)
        frames = [station.camera.capture(v) for v in station.config.station.views]
        res = station.pipeline.inspect(light.request, frames, operator="demo")
    finally:
        station.pipeline.scale = scale
    assert light.mismatch(res.record.decision) is None, light.mismatch(res.record.decision)
    assert any(f.kind == "missing_part" and "30.0 g" in f.detail for f in res.findings)
