"""Colour correction on a real phone photo of a chart (committed crop, MIT; tests/data/real/colorchecker) and
the fitting itself: CIELAB-error refinement and the per-channel tone model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.chart import (REFERENCE_LAB_D50, ChartError, calibrate_from_image, decode, detect_chart,
                               fit_correction, linear_rgb_to_lab, reference_linear_rgb)
from calibration.colour import delta_e_ciede2000
from calibration.real_charts import in_sample, leave_one_out

PHOTO = Path(__file__).parent / "data" / "real" / "colorchecker" / "IMG_20140613_203438_crop.jpg"


@pytest.fixture(scope="module")
def photo_patches() -> np.ndarray:
    return decode(detect_chart(cv2.imread(str(PHOTO)))[:, ::-1] / 255.0, "srgb")


def test_real_chart_found_and_chart_free_crop_refused():
    img = cv2.imread(str(PHOTO))
    out = calibrate_from_image(img, "srgb", "tone").to_json()
    assert [p["index"] for p in out["patches"]] == list(range(1, 25))
    assert out["mean_delta_e00_after"] < out["mean_delta_e00_before"]
    assert len(out["correction"]["exponents"]) == 3
    with pytest.raises(ChartError):
        calibrate_from_image(img[:, :250])


def test_tone_model_beats_matrix_on_patches_it_did_not_see(photo_patches):
    # A phone JPEG's tone curve is not sRGB's: the per-channel exponent removes much of what a 3x3 cannot.
    matrix, tone = leave_one_out(photo_patches, "matrix"), leave_one_out(photo_patches, "tone")
    assert tone < matrix - 1.0
    # Leave-one-out is the honest figure: never better than the fit residual.
    assert in_sample(photo_patches, "tone") <= tone


def test_lab_refinement_never_worse_than_linear_least_squares(photo_patches):
    from calibration.chart import _terms

    for model in ("matrix", "rootpoly"):
        coef, *_ = np.linalg.lstsq(_terms(photo_patches, model), reference_linear_rgb(), rcond=None)
        plain = delta_e_ciede2000(linear_rgb_to_lab(_terms(photo_patches, model) @ coef), REFERENCE_LAB_D50).mean()
        assert in_sample(photo_patches, model) <= plain + 1e-6


def test_tone_model_recovers_a_tone_curve_a_matrix_cannot():
    rng = np.random.default_rng(0)
    mix = np.array([[0.9, 0.08, 0.02], [0.05, 0.9, 0.05], [0.02, 0.1, 0.88]])
    exps = np.array([0.8, 0.7, 0.9])  # a camera's own tone curve per channel, then its colour mixing
    camera = (np.clip(reference_linear_rgb(), 1e-4, 1) @ mix.T) ** (1 / exps)
    camera = np.clip(camera + rng.normal(0, 0.001, camera.shape), 1e-4, 1)
    tone = fit_correction(camera, "tone")
    err_tone = delta_e_ciede2000(linear_rgb_to_lab(tone.apply_linear(camera)), REFERENCE_LAB_D50).mean()
    err_matrix = delta_e_ciede2000(linear_rgb_to_lab(fit_correction(camera, "matrix").apply_linear(camera)),
                                   REFERENCE_LAB_D50).mean()
    assert err_tone < 1.0 < err_matrix
    assert np.allclose(tone.exponents, exps, atol=0.05)


def test_unknown_model_refused():
    with pytest.raises(ValueError, match="unknown correction model"):
        fit_correction(reference_linear_rgb(), "cubic")
