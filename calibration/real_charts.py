"""Colour charts on real photos: jarrelscy/ColorCheckerDetector (MIT), 7 phone photos 3264x2448 of an X-Rite
ColorChecker Classic on a cluttered desk.

    python -m calibration.real_charts --mirror <git mirror of jarrelscy/ColorCheckerDetector>

Per photo: whether the chart is found without help, the mean ΔE00 of the 24 patches after the fitted
correction (in-sample), and leave-one-patch-out: each patch corrected by a fit on the other 23, which is
what a patch the fit never saw would get. Also a crop of each photo with the chart cut out must be refused.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import cv2
import numpy as np

from calibration.chart import (REFERENCE_LAB_D50, ChartError, calibrate_from_image, decode, detect_chart,
                               fit_correction, linear_rgb_to_lab)
from calibration.colour import delta_e_ciede2000

CHART_COMMIT = "HEAD"
CHART_REPO = "jarrelscy/ColorCheckerDetector"


def leave_one_out(image: np.ndarray, model: str = "matrix") -> float:
    lin = decode(detect_chart(image)[:, ::-1] / 255.0, "srgb")
    errs = []
    for i in range(24):
        keep = np.arange(24) != i
        corr = fit_correction_subset(lin, keep, model)
        errs.append(float(delta_e_ciede2000(linear_rgb_to_lab(corr.apply_linear(lin[i:i + 1]))[0],
                                            REFERENCE_LAB_D50[i])))
    return float(np.mean(errs))


def fit_correction_subset(lin: np.ndarray, keep: np.ndarray, model: str):
    from calibration.chart import _terms, reference_linear_rgb, ColourCorrection

    coef, *_ = np.linalg.lstsq(_terms(lin[keep], model), reference_linear_rgb()[keep], rcond=None)
    return ColourCorrection(model, coef, "srgb")


def main() -> None:
    ap = argparse.ArgumentParser(description="colour charts on real photos")
    ap.add_argument("--mirror", type=Path, required=True)
    args = ap.parse_args()
    git_dir = args.mirror / ".git" if (args.mirror / ".git").exists() else args.mirror
    names = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "--name-only", CHART_COMMIT],
                           check=True, capture_output=True, text=True).stdout.split()
    found, ins, loo, refused = 0, [], [], 0
    photos = [n for n in names if n.lower().endswith(".jpg")]
    for name in photos:
        data = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{CHART_COMMIT}:{name}"], check=True,
                              capture_output=True).stdout
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        try:
            cal = calibrate_from_image(img)
            found += 1
            ins.append(cal.to_json()["mean_delta_e00_after"])
            loo.append(leave_one_out(img))
            line = f"found, ΔE00 after {ins[-1]:.2f} (leave-one-patch-out {loo[-1]:.2f})"
        except ChartError as exc:
            line = f"not found: {exc}"
        h, w = img.shape[:2]
        try:  # the left third of the desk, without the chart
            calibrate_from_image(img[:, : w // 5])
            line += "; chart-free crop NOT refused"
        except ChartError:
            refused += 1
            line += "; chart-free crop refused"
        print(f"{name}: {line}")
    print(f"{CHART_REPO}: found {found}/{len(photos)}, mean ΔE00 after correction {np.mean(ins):.2f} in-sample, "
          f"{np.mean(loo):.2f} leave-one-patch-out; chart-free crops refused {refused}/{len(photos)}")


if __name__ == "__main__":
    main()
