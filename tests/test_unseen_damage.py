"""Unseen damage against each SKU's good appearance (vision/unseen.py), with the shipped backbone."""

import numpy as np
import pytest

from station.domain import Finding, FindingSource
from station.pipeline import explained_damage_removed
from vision.camera import StagedItem, SyntheticCamera
from vision.catalogue import SAMPLE_SKUS, SAMPLE_VIEWS, build_catalogue
from vision.compare import CatalogueComparer
from vision.unseen import UnseenDamage, coreset

SKU = "APP-TEE-M"


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return build_catalogue(tmp_path_factory.mktemp("cat"), [s for s in SAMPLE_SKUS if s.sku == SKU])


def _frames(cam, defects, seed):
    cam.stage(StagedItem(SKU, defects, seed))
    return [cam.capture(v) for v in SAMPLE_VIEWS]


@pytest.fixture(scope="module")
def trained(catalogue, tmp_path_factory):
    goods = tmp_path_factory.mktemp("goods")
    unseen = UnseenDamage(catalogue, goods_dir=goods)
    cmp = CatalogueComparer(catalogue, difference=False, retrieval=False, unseen=unseen)
    cam = SyntheticCamera(640, 480, 7)
    first = cmp.compare(catalogue.get(SKU), _frames(cam, {}, 100))
    before = unseen.calibration(SKU)
    for seed in (100, 101, 102):
        res = first if seed == 100 else cmp.compare(catalogue.get(SKU), _frames(cam, {}, seed))
        assert cmp.learn_good(SKU, res, f"rec-{seed}") == 3
    return cmp, unseen, cam, goods, first, before


def test_a_memory_of_catalogue_views_alone_is_not_calibrated_and_raises_nothing(trained):
    _, _, _, _, first, before = trained
    assert before.threshold is None and before.source == "none" and "5 needed" in before.detail
    assert not [f for f in first.findings if f.kind == "damage"]
    assert {a["view"] for a in first.details["anomaly"]} == set(SAMPLE_VIEWS)  # the map is still there
    assert all(a["calibration"]["source"] == "none" for a in first.details["anomaly"])


def test_goods_from_the_line_calibrate_the_sku_with_provenance(trained):
    _, unseen, _, _, _, _ = trained
    cal = unseen.calibration(SKU)
    assert cal.source == "sku" and cal.images == 12 and cal.threshold > 0
    assert "leave-one-out" in cal.detail and SKU in cal.detail
    mem = unseen.memory(SKU)
    assert sum(s.startswith("catalogue:") for s in mem.sources) == 3
    assert sum(s.startswith("return:") for s in mem.sources) == 9


def test_a_genuine_unit_passes_and_a_torn_one_is_found_where_it_is_torn(trained, catalogue):
    cmp, _, cam, _, _, _ = trained
    genuine = cmp.compare(catalogue.get(SKU), _frames(cam, {}, 250))
    assert not [f for f in genuine.findings if f.kind == "damage"]
    torn = cmp.compare(catalogue.get(SKU), _frames(cam, {"front": ("tear",)}, 301))
    found = [f for f in torn.findings if f.kind == "damage"]
    assert found and {f.view for f in found} == {"front"}
    assert all(f.value > 1.0 and f.source == FindingSource.CATALOGUE and f.box_xyxy for f in found)
    front = next(a for a in torn.details["anomaly"] if a["view"] == "front")
    assert front["regions"] and front["calibration"]["source"] == "sku"


def test_goods_persist_bounded_and_reference_features_are_cached(trained, catalogue):
    _, _, _, goods, _, _ = trained
    stored = list(goods.rglob("*-v1.npy"))
    assert len(stored) == 9
    assert len(list((catalogue.root / ".features" / "patches").glob("*.npy"))) == 3
    again = UnseenDamage(catalogue, goods_dir=goods, max_goods=4)
    mem = again.memory(SKU)
    assert sum(s.startswith("return:") for s in mem.sources) == 4  # the newest four, the catalogue's three kept
    assert sum(s.startswith("catalogue:") for s in mem.sources) == 3


def test_a_corrupt_cache_file_is_recomputed(catalogue, tmp_path):
    for f in (catalogue.root / ".features" / "patches").glob("*.npy"):
        f.write_bytes(b"not numpy")
    fresh = UnseenDamage(catalogue)
    assert len(fresh.memory(SKU).images) == 3


def test_coreset_keeps_the_rare_patch_random_thinning_would_drop():
    rng = np.random.default_rng(0)
    common = rng.normal(0, 0.1, (2000, 8)).astype(np.float32)
    rare = np.full((1, 8), 5.0, np.float32)
    picked = coreset(np.concatenate([common, rare]), 50)
    assert len(picked) == 50 and np.any(np.all(picked == 5.0, axis=1))


def test_damage_a_detector_already_named_is_not_counted_twice():
    scratch = Finding("scratch", 0.8, FindingSource.DETECTOR, "front", (100, 100, 140, 130))
    same = Finding("damage", 0.6, FindingSource.CATALOGUE, "front", (110, 105, 150, 135), value=1.2)
    elsewhere = Finding("damage", 0.6, FindingSource.CATALOGUE, "front", (300, 300, 340, 330), value=1.2)
    other_view = Finding("damage", 0.6, FindingSource.CATALOGUE, "side", (110, 105, 150, 135), value=1.2)
    colour = Finding("colour_mismatch", 0.7, FindingSource.CATALOGUE, value=4.0)
    kept = explained_damage_removed([same, elsewhere, other_view, colour], [scratch])
    assert kept == [elsewhere, other_view, colour]
