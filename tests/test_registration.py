"""Registration that says when it fails (issue 18, item 1): a typed outcome with its reason and numbers, no
heat map from a failed one, a `registration_failed` finding that sends the item to a supervisor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from station.domain import CatalogueItem, Disposition, Finding, FindingSource, Grade, ReturnReason, ReturnRequest
from vision.align import (RegistrationFailureReason, RegistrationStatus, homography_degeneracy, register_images,
                          verify_registration)
from vision.real_registration import corner_error, make_pair

PHOTOS = Path(__file__).parent / "data" / "real" / "label_recognition"  # Apache-2.0 packaging photos


def _photo(name: str) -> np.ndarray:
    img = cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


@pytest.fixture(scope="module")
def photo_pair():
    """A real packaging photo and its copy moved (<= 3 deg, <= 10 px, a mild perspective), relit by up to
    15 %, noisy and JPEG-compressed, with the true warp."""
    return make_pair(np.random.default_rng(7), "p", _photo("tests__dataset__image11.jpeg"),
                     _photo("tests__dataset__image11.jpeg"))


def test_registration_recovers_a_known_warp_on_a_real_photo(photo_pair):
    p = photo_pair
    reg = register_images(p.test, p.template)
    assert reg.ok and reg.status == RegistrationStatus.OK and reg.reason is None, reg.detail
    h, w = p.test.shape[:2]
    assert corner_error(reg.query_to_ref, p.test_to_template, w, h) < 1.0
    assert reg.inliers >= 12 and reg.residual_px is not None and reg.residual_px < 0.5
    out = reg.to_json()
    assert out["status"] == "ok" and out["reason"] is None
    assert {"status", "reason", "detail", "inliers", "residual_px", "agreement", "overlap", "method"} <= set(out)


def test_an_unrelated_image_fails_with_a_reason_and_no_transform(photo_pair):
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur((rng.random(photo_pair.template.shape) * 255).astype(np.uint8), (0, 0), 2.0)
    reg = register_images(noise, photo_pair.template)
    assert reg.status == RegistrationStatus.FAILED and reg.query_to_ref is None
    assert reg.reason in set(RegistrationFailureReason) and reg.detail
    assert reg.to_json()["status"] == "failed" and reg.to_json()["reason"] == reg.reason.value


def test_a_wrong_transform_is_a_residual_too_high(photo_pair):
    """The true warp off by 6 px: structure still moves after warping, and the residual says by how much."""
    p = photo_pair
    off = np.array([[1, 0, 6.0], [0, 1, 0], [0, 0, 1]]) @ p.test_to_template
    reg = verify_registration(_grey(p.test), _grey(p.template), off, 50, "features")
    assert reg.reason == RegistrationFailureReason.RESIDUAL_TOO_HIGH, reg.detail
    assert 4.0 < reg.residual_px < 8.0
    good = verify_registration(_grey(p.test), _grey(p.template), p.test_to_template, 50, "features")
    assert good.ok and good.residual_px < 0.5


def test_degenerate_and_non_overlapping_transforms_fail_by_name(photo_pair):
    p = photo_pair
    h, w = p.test.shape[:2]
    mirror = np.array([[-1, 0, w], [0, 1, 0], [0, 0, 1]], np.float64)
    reg = verify_registration(_grey(p.test), _grey(p.template), mirror, 40, "features")
    assert reg.reason == RegistrationFailureReason.DEGENERATE_HOMOGRAPHY and "mirror" in reg.detail
    wild = np.array([[1, 0, 0], [0, 1, 0], [0.003, 0, 1]], np.float64)
    assert "perspective" in homography_degeneracy(wild, (w, h))
    # The same perspective over a small product box is mild: only the compared region counts.
    assert homography_degeneracy(wild, (w, h), (10, 10, 60, 60)) is None
    assert homography_degeneracy(np.eye(3), (w, h)) is None
    away = np.array([[1, 0, 0.7 * w], [0, 1, 0], [0, 0, 1]], np.float64)
    reg = verify_registration(_grey(p.test), _grey(p.template), away, 40, "features")
    assert reg.reason == RegistrationFailureReason.OVERLAP_TOO_SMALL and reg.overlap < 0.5


# ------------------------------------------------------------------------------------ station path


@pytest.fixture(scope="module")
def comparer(tmp_path_factory):
    from vision.catalogue import build_sample_catalogue
    from vision.compare import CatalogueComparer

    return CatalogueComparer(build_sample_catalogue(tmp_path_factory.mktemp("cat")), difference=True,
                             retrieval=False)


def _frames(sku: str, seed: int = 1):
    from vision.camera import StagedItem, SyntheticCamera
    from vision.catalogue import SAMPLE_VIEWS

    cam = SyntheticCamera(640, 480, 7)
    cam.stage(StagedItem(sku, {}, seed))
    return [cam.capture(v) for v in SAMPLE_VIEWS]


def test_compare_reports_each_views_registration(comparer):
    sku = "GAD-SPEAKER-M"
    res = comparer.compare(comparer.catalogue.get(sku), _frames(sku))
    regs = res.details["registration"]
    assert [r["view"] for r in regs] == [f.view for f in _frames(sku)]
    assert all(r["status"] == "ok" and r["reason"] is None for r in regs), regs
    assert not [f for f in res.findings if f.kind == "registration_failed"]


def test_a_failed_registration_is_a_finding_and_no_heat_map(comparer, monkeypatch):
    """With a residual limit no view meets, every view fails: each says so, none is diffed."""
    import vision.compare as compare_module
    from vision.compare import HeatmapStatus, view_heatmap

    sku = "GAD-SPEAKER-M"
    frames = _frames(sku)
    monkeypatch.setattr(compare_module, "STATION_MAX_RESIDUAL_PX", 0.0)
    res = comparer.compare(comparer.catalogue.get(sku), frames)
    failed = [f for f in res.findings if f.kind == "registration_failed"]
    assert sorted(f.view for f in failed) == sorted(f.view for f in frames)
    assert all("residual too high" in f.detail for f in failed)
    assert res.details["differences"] == []
    assert all(r["status"] == "failed" and r["reason"] == "residual_too_high" for r in res.details["registration"])
    hm = view_heatmap(comparer, frames[0].image, sku, frames[0].view)
    assert hm.status == HeatmapStatus.NOT_ALIGNED and hm.heatmap is None
    assert hm.registration.reason == RegistrationFailureReason.RESIDUAL_TOO_HIGH
    assert comparer.difference_for(comparer.prepare(frames[0].image), sku) is None


def test_registration_failed_goes_to_a_supervisor_with_the_grade_unaffected():
    from station.rules import RuleSet, RulesEngine

    engine = RulesEngine(RuleSet.load())
    item = CatalogueItem("GAD", "electronics", "soundbee")
    req = ReturnRequest("o1", "GAD", ReturnReason.NO_REASON_7DAY, unit_code="U1")
    failed = Finding("registration_failed", 1.0, FindingSource.CATALOGUE, "front",
                     detail="not compared with the catalogue view: residual too high")
    d = engine.decide(req, item, [failed])
    assert "G-REGISTRATION-FAILED" in d.rules_fired and d.review and d.disposition == Disposition.MANUAL_REVIEW
    assert d.grade == Grade.A and d.proposed_disposition != Disposition.MANUAL_REVIEW
    dent = Finding("dent", 0.9, FindingSource.DETECTOR, "side", (10, 10, 50, 50))
    assert engine.decide(req, item, [failed, dent]).grade == engine.decide(req, item, [dent]).grade == Grade.C


def test_the_real_evaluation_refuses_bad_input_with_one_line(tmp_path):
    for args in ([], ["--labels", str(tmp_path / "nowhere")]):
        run = subprocess.run([sys.executable, "-m", "vision.real_registration", *args], capture_output=True,
                             text=True, cwd=Path(__file__).parents[1])
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stdout.strip().startswith("error:") and len(run.stdout.strip().splitlines()) == 1
        assert "Traceback" not in run.stderr
