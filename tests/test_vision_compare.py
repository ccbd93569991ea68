"""Catalogue comparer v2 on rendered images: look-alike swaps, reference difference, feature cache, CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from station.cli import app
from vision.compare import CatalogueComparer
from vision.evaluate import (auroc, build_evaluation_catalogue, evaluation_skus, paint_missing_part, render_views,
                             tpr_at_fpr)
from vision.features import CACHE_DIR
from vision.synth import render_item
from vision.evaluate import eval_style


@pytest.fixture(scope="module")
def eval_cat(tmp_path_factory):
    return build_evaluation_catalogue(tmp_path_factory.mktemp("evalcat"))


def _looks():
    return {s.sku: s.look for s in evaluation_skus()}


@pytest.mark.parametrize("true,claimed,match", [
    ("GAD-EARBUD-X2", "GAD-EARBUD-X2", True),
    ("GAD-EARBUD-X2-LP", "GAD-EARBUD-X2", False),  # same box, other print
    ("TOY-BEAR-S-LC", "TOY-BEAR-S", False),  # same bear, other colour
    ("HH-KETTLE-1L", "GAD-EARBUD-X2", False),  # another catalogue item
])
def test_identity_tells_lookalikes_apart(eval_cat, true, claimed, match):
    cmp = CatalogueComparer(eval_cat)
    views = [cmp.prepare(img) for img in render_views(_looks()[true], 31, partial_share=0.0)]
    score, ev = cmp.identity([v for v in views if v is not None], claimed)
    assert (score >= cmp.identity_threshold) == match, (score, {k: e.similarity() for k, e in ev.items()})


def test_reference_difference_localises_a_missing_part(eval_cat):
    cmp = CatalogueComparer(eval_cat)
    look = _looks()["HH-KETTLE-1L"]
    rng = np.random.default_rng(3)
    item = render_item(rng, look, (), eval_style(False), "front")
    img, gone = paint_missing_part(rng, item.image, item.product_mask)
    res = cmp.difference_for(cmp.prepare(img), "HH-KETTLE-1L")
    assert res is not None and res.heatmap.shape == gone.shape
    assert auroc(res.heatmap.ravel(), gone.ravel() > 0) > 0.9
    ys, xs = np.nonzero(gone)
    cx, cy = xs.mean(), ys.mean()
    assert any(r.kind == "missing_part" and r.box_xyxy[0] - 10 <= cx <= r.box_xyxy[2] + 10
               and r.box_xyxy[1] - 10 <= cy <= r.box_xyxy[3] + 10 for r in res.regions)


def test_feature_cache_is_reused_and_invalidated_by_image_hash(tmp_path, sample_catalogue_dir):
    import shutil

    from vision.catalogue import Catalogue

    root = tmp_path / "cat"
    shutil.copytree(sample_catalogue_dir, root)
    cat = Catalogue.load(root)
    first = CatalogueComparer(cat)
    first.references("TOY-BEAR-S")
    assert first._cache.misses == 3 and len(list((root / CACHE_DIR).glob("*.npz"))) >= 3
    second = CatalogueComparer(cat)
    second.references("TOY-BEAR-S")
    assert second._cache.hits == 3 and second._cache.misses == 0
    # A changed reference image has another hash: recomputed, never the stale entry.
    path = cat.image_path(cat.get("TOY-BEAR-S"), 0)
    img = cv2.imread(str(path))
    cv2.rectangle(img, (10, 10), (60, 60), (0, 0, 255), -1)
    cv2.imwrite(str(path), img)
    third = CatalogueComparer(cat)
    third.references("TOY-BEAR-S")
    assert third._cache.misses == 1 and third._cache.hits == 2


def test_roc_helpers_match_definitions():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0], bool)
    assert auroc(scores, labels) == pytest.approx(8 / 9)
    tpr, thr = tpr_at_fpr(scores, labels, 0.0)
    assert tpr == pytest.approx(2 / 3) and thr == pytest.approx(0.8)


def _captured_front_view(tmp_path, sku: str = "GAD-SPEAKER-M", seed: int = 9):
    """A synthetic camera's front view of ``sku`` written to a PNG, as `station compare` reads it."""
    from vision.camera import StagedItem, SyntheticCamera

    cam = SyntheticCamera()
    cam.stage(StagedItem(sku, {}, seed))
    img_path = tmp_path / "view.png"
    cv2.imwrite(str(img_path), cam.capture("front").image)
    return img_path


def test_cli_compare_json_and_heatmap(data_dir, tmp_path):
    img_path = _captured_front_view(tmp_path)
    heat = tmp_path / "heat.png"
    r = CliRunner().invoke(app, ["compare", "--json", "--sku", "GAD-SPEAKER-M", "--heatmap", str(heat),
                                 "--data-dir", str(data_dir), str(img_path)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    # the contract: these fields stay (new ones may be added, e.g. segmentation)
    assert set(out) >= {"identity", "differences", "anomaly", "colour", "size_mm", "presentation", "timings_ms",
                        "segmentation", "registration"}
    assert out["identity"]["match"] is True and out["colour"]["delta_e00"] < 3
    assert out["registration"]["status"] == "ok" and out["registration"]["view"]  # the genuine view registers
    # three catalogue views are no calibration: the map, and no region, with why
    assert out["anomaly"]["calibration"]["source"] == "none" and out["anomaly"]["regions"] == []
    assert "anomaly" in out["timings_ms"]
    h = cv2.imread(str(heat), cv2.IMREAD_UNCHANGED)
    assert h.dtype == np.uint8 and h.ndim == 2 and h.shape == (480, 640)
    swap = CliRunner().invoke(app, ["compare", "--json", "--sku", "HH-KETTLE-1L", "--data-dir", str(data_dir),
                                    str(img_path)])
    assert swap.exit_code == 0 and json.loads(swap.stdout)["identity"]["match"] is False


@pytest.mark.parametrize("make,args,needle", [
    (lambda p: None, ["--sku", "GAD-SPEAKER-M"], "not found"),
    (lambda p: p.write_bytes(b"not a png"), ["--sku", "GAD-SPEAKER-M"], "not a readable image"),
    (lambda p: cv2.imwrite(str(p), np.full((50, 50, 3), 200, np.uint8)), ["--sku", "NOPE"], "unknown SKU"),
])
def test_cli_compare_bad_input_exits_2(data_dir, tmp_path, make, args, needle):
    p = tmp_path / "x.png"
    make(p)
    r = CliRunner().invoke(app, ["compare", "--json", *args, "--data-dir", str(data_dir), str(p)])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------ streamer presentation image (issue 5)


def _hue_shifted(img: np.ndarray, degrees: int) -> np.ndarray:
    """A stream filter: every hue turned (the whole frame, background included)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + degrees // 2) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _stream_shot(sku: str, seed: int = 5) -> np.ndarray:
    """The item as a stream shows it: another background, perspective, mild lighting, JPEG."""
    from vision.catalogue import SAMPLE_SKUS
    from vision.synth import SceneStyle

    look = next(s.look for s in SAMPLE_SKUS if s.sku == sku)
    return render_item(np.random.default_rng(seed), look, (), SceneStyle(size=(640, 480), lighting_jitter=0.3)).image


def _station(data_dir):
    from station.app import boot
    from station.config import StationConfig

    return boot(StationConfig.model_validate({"station": {"data_dir": str(data_dir)}}))


@pytest.mark.parametrize("sku", ["APP-TEE-M", "TOY-BEAR-S", "HH-KETTLE-1L", "GAD-SPEAKER-M"])
def test_presentation_colour_shift_is_measured(sample_catalogue_dir, sku):
    from station.rules import RuleSet, RulesEngine
    from vision.catalogue import Catalogue

    cat = Catalogue.load(sample_catalogue_dir)
    cmp = CatalogueComparer(cat)
    tol = RulesEngine(RuleSet.load()).colour_tolerance(cat.get(sku).category)  # the shipped rules' tolerance
    ref = cv2.imread(str(cat.image_path(cat.get(sku), 0)))
    same = cmp.presentation(ref, sku, tol)
    assert same is not None and same.delta_e00 < 1.0 and not same.mismatch and same.finding() is None
    shot = cmp.presentation(_stream_shot(sku), sku, tol)  # an honest stream: other light, same colour
    assert shot is not None and not shot.mismatch, shot.to_json()
    filtered = cmp.presentation(_hue_shifted(_stream_shot(sku), 40), sku, tol)
    assert filtered is not None and filtered.mismatch and filtered.delta_e00 > 8, filtered.to_json()
    f = filtered.finding()
    assert f.kind == "presentation_mismatch" and f.value == pytest.approx(filtered.delta_e00, abs=1e-3)


def _colour_complaint(station, order: str, presentation):
    from station.domain import ReturnReason, ReturnRequest
    from vision.camera import StagedItem

    station.camera.stage(StagedItem("APP-TEE-M", {}, 2))
    frames = [station.camera.capture(v) for v in station.config.station.views]
    request = ReturnRequest(order, "APP-TEE-M", ReturnReason.COLOUR_DIFFERENCE, unit_code=f"U-{order}",
                            streamer="host-7", brand="b")
    return station.pipeline.inspect(request, frames, operator="test", presentation=presentation)


def test_colour_complaint_with_filtered_presentation_goes_to_the_streamer(data_dir):
    """The item matches the catalogue (ΔE within apparel's 2.0), the stream showed it colour-shifted:
    the streamer shares liability (L-STREAMER-PRESENTATION) and the record carries the evidence."""
    import json as _json

    from station.records import measurements_of

    station = _station(data_dir)
    try:
        ref = cv2.imread(str(station.catalogue.image_path(station.catalogue.get("APP-TEE-M"), 0)))
        res = _colour_complaint(station, "pres-1", _hue_shifted(ref, 40))
        d = res.record.decision
        assert res.comparison.delta_e00 < 2.0
        assert not any(f.kind in ("colour_mismatch", "wrong_item") for f in res.findings)
        pres = [f for f in res.findings if f.kind == "presentation_mismatch"]
        assert pres and pres[0].value > 8
        assert d.liability[0].rule == "L-STREAMER-PRESENTATION"
        shares = {s.party.value: s.share for s in d.liability}
        assert 0.3 <= shares["streamer"] <= 0.5 and sum(shares.values()) == pytest.approx(1.0)
        assert any("presentation_mismatch" in e for e in d.liability[0].evidence)
        assert res.to_json()["presentation"]["mismatch"] is True
        stored = measurements_of(station.store.get(res.record.record_id))
        assert stored["presentation"]["mismatch"] is True
        assert stored["presentation"]["delta_e00"] == pytest.approx(pres[0].value, abs=1e-3)
        assert len(stored["presentation"]["lab"]) == 3 and len(stored["presentation"]["reference_lab"]) == 3
        assert _json.loads(station.store.get(res.record.record_id)["findings_json"])[-1]["kind"] == "presentation_mismatch"
        # The stream showed it as catalogued: no presentation_mismatch, the streamer is not liable.
        ok = _colour_complaint(station, "pres-2", _stream_shot("APP-TEE-M"))
        assert not any(f.kind == "presentation_mismatch" for f in ok.findings)
        assert "streamer" not in {s.party.value for s in ok.record.decision.liability}
        assert measurements_of(station.store.get(ok.record.record_id))["presentation"]["mismatch"] is False
        # No presentation image: nothing measured, nothing stored about it.
        none = _colour_complaint(station, "pres-3", None)
        assert "presentation" not in measurements_of(station.store.get(none.record.record_id))
    finally:
        station.close()


def test_cli_compare_presentation(data_dir, tmp_path):
    img_path = _captured_front_view(tmp_path)
    pres = tmp_path / "stream.png"
    cv2.imwrite(str(pres), _hue_shifted(_stream_shot("GAD-SPEAKER-M"), 60))
    r = CliRunner().invoke(app, ["compare", "--json", "--sku", "GAD-SPEAKER-M", "--presentation", str(pres),
                                 "--data-dir", str(data_dir), str(img_path)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["presentation"]["mismatch"] is True and out["presentation"]["delta_e00"] > 3
    cv2.imwrite(str(pres), _stream_shot("GAD-SPEAKER-M"))
    r = CliRunner().invoke(app, ["compare", "--json", "--sku", "GAD-SPEAKER-M", "--presentation", str(pres),
                                 "--data-dir", str(data_dir), str(img_path)])
    assert r.exit_code == 0 and json.loads(r.stdout)["presentation"]["mismatch"] is False
    r = CliRunner().invoke(app, ["compare", "--json", "--sku", "GAD-SPEAKER-M", "--data-dir", str(data_dir),
                                 str(img_path)])
    assert json.loads(r.stdout)["presentation"] is None
    bad = CliRunner().invoke(app, ["compare", "--json", "--sku", "GAD-SPEAKER-M", "--presentation",
                                   str(tmp_path / "nope.png"), "--data-dir", str(data_dir), str(img_path)])
    assert bad.exit_code == 2 and "not found" in bad.output
