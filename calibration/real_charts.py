"""Colour charts on real photos: is the chart found without help, and how well does the fitted correction
bring its patches onto the published values?

    python -m calibration.real_charts --mirror <git mirror of jarrelscy/ColorCheckerDetector>
                                      [--karnehen <git mirror of karnehen/ColorChecker>]

Sets (read from git mirrors, nothing committed):
- jarrelscy/ColorCheckerDetector (MIT): 7 phone JPEGs 3264x2448 of a chart on a cluttered desk. Its README
  says the chart is printed on a sheet of paper (two charts on the sheet, one edited out): a printed
  replica, so the X-Rite reference values are not its true colours and no correction can bring it to
  them; it measures detection and the correction's behaviour, not the accuracy limit.
- karnehen/ColorChecker (no licence stated: evaluated from the mirror only): DSLR JPEGs of a real X-Rite
  ColorChecker Classic on white paper (the three with a chart) and two without one (must be refused).

Per photo and correction model: the mean ΔE00 of the 24 patches after the fitted correction in-sample (the
fit residual) and leave-one-patch-out (each patch corrected by a fit on the other 23: what a colour the fit
never saw gets; the honest figure). A crop of each photo without the chart must be refused.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import cv2
import numpy as np

from calibration.chart import (MODELS, REFERENCE_LAB_D50, ChartError, calibrate_from_image, decode, detect_chart,
                               fit_correction, linear_rgb_to_lab)
from calibration.colour import delta_e_ciede2000

CHART_COMMIT = "HEAD"
CHART_REPO = "jarrelscy/ColorCheckerDetector"
KARNEHEN_REPO = "karnehen/ColorChecker"
KARNEHEN_COMMIT = "d6d53a3163d728b283f9d2d273e2e738a0d4baa7"
_KARNEHEN_DIR = "src/seedcounter/examples/"
# (path in the tree, has a chart): the pinned subset
KARNEHEN_PHOTOS = (
    (_KARNEHEN_DIR + "seed_dataset_clustering/CAMERA1/class1_class2_class3_class4_exp1_cc_1.jpg", True),
    (_KARNEHEN_DIR + "seed_dataset_clustering/CAMERA2/class1_class4_exp1_cc_1.jpg", True),
    (_KARNEHEN_DIR + "seeds.jpg", True),
    (_KARNEHEN_DIR + "seed_dataset_clustering/CAMERA1/class1_class2_class3_class4_exp1_1.jpg", False),
    (_KARNEHEN_DIR + "seed_dataset_clustering/CAMERA2/class1_class4_exp1_1.jpg", False),
)


def in_sample(lin: np.ndarray, model: str) -> float:
    corr = fit_correction(lin, model)
    return float(delta_e_ciede2000(linear_rgb_to_lab(corr.apply_linear(lin)), REFERENCE_LAB_D50).mean())


def leave_one_out(lin: np.ndarray, model: str = "matrix") -> float:
    """Mean ΔE00 of each patch corrected by a fit on the other 23 (``lin``: the 24 decoded patch colours)."""
    errs = []
    for i in range(24):
        keep = np.arange(24) != i
        corr = fit_correction(lin, model, keep=keep)
        errs.append(float(delta_e_ciede2000(linear_rgb_to_lab(corr.apply_linear(lin[i:i + 1]))[0],
                                            REFERENCE_LAB_D50[i])))
    return float(np.mean(errs))


def _git_dir(mirror: Path) -> Path:
    return mirror / ".git" if (mirror / ".git").exists() else mirror


def _read(git_dir: Path, commit: str, name: str) -> np.ndarray:
    data = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{name}"], check=True,
                          capture_output=True).stdout
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def evaluate(photos: list[tuple[str, np.ndarray, bool]], label: str) -> dict:
    """Found / refused counts and per-model in-sample and leave-one-patch-out ΔE00 over the photos with a chart."""
    found, refused, with_chart, without_chart = 0, 0, 0, 0
    scores: dict[str, dict[str, list[float]]] = {m: {"in_sample": [], "leave_one_out": []} for m in MODELS}
    for name, img, has_chart in photos:
        h, w = img.shape[:2]
        if not has_chart:
            without_chart += 1
            try:
                calibrate_from_image(img)
                print(f"{name}: no chart, NOT refused")
            except ChartError:
                refused += 1
                print(f"{name}: no chart, refused")
            continue
        with_chart += 1
        try:
            calibrate_from_image(img)
        except ChartError as exc:
            print(f"{name}: not found: {exc}")
            continue
        found += 1
        lin = decode(detect_chart(img)[:, ::-1] / 255.0, "srgb")
        parts = []
        for m in MODELS:
            scores[m]["in_sample"].append(in_sample(lin, m))
            scores[m]["leave_one_out"].append(leave_one_out(lin, m))
            parts.append(f"{m} {scores[m]['in_sample'][-1]:.2f}/{scores[m]['leave_one_out'][-1]:.2f}")
        without_chart += 1
        try:  # the left fifth of the scene, without the chart
            calibrate_from_image(img[:, : w // 5])
            crop = "chart-free crop NOT refused"
        except ChartError:
            refused += 1
            crop = "chart-free crop refused"
        print(f"{name}: found; ΔE00 in-sample/leave-one-patch-out: {', '.join(parts)}; {crop}")
    summary = {m: {k: round(float(np.mean(v)), 2) if v else None for k, v in s.items()} for m, s in scores.items()}
    print(f"{label}: found {found}/{with_chart}; refused {refused}/{without_chart} chart-free frames; mean ΔE00 "
          "after correction, in-sample / leave-one-patch-out: "
          + ", ".join(f"{m} {s['in_sample']} / {s['leave_one_out']}" for m, s in summary.items()))
    return {"found": found, "with_chart": with_chart, "refused": refused, "without_chart": without_chart,
            "models": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description="colour charts on real photos")
    ap.add_argument("--mirror", type=Path, required=True, help=f"git mirror of {CHART_REPO}")
    ap.add_argument("--karnehen", type=Path, default=None, help=f"git mirror of {KARNEHEN_REPO} (optional)")
    args = ap.parse_args()
    git_dir = _git_dir(args.mirror)
    names = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "--name-only", CHART_COMMIT],
                           check=True, capture_output=True, text=True).stdout.split()
    photos = [(n, _read(git_dir, CHART_COMMIT, n), True) for n in names if n.lower().endswith(".jpg")]
    evaluate(photos, f"{CHART_REPO} (a printed chart)")
    if args.karnehen is not None:
        kdir = _git_dir(args.karnehen)
        kphotos = [(Path(p).name, _read(kdir, KARNEHEN_COMMIT, p), c) for p, c in KARNEHEN_PHOTOS]
        evaluate(kphotos, f"{KARNEHEN_REPO} (an X-Rite chart)")


if __name__ == "__main__":
    main()
