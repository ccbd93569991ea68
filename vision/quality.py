"""Capture quality gate: blur, exposure and glare checks that ask for a retake instead of guessing."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    ok: bool
    sharpness: float
    mean: float
    clipped_share: float
    problems: tuple[str, ...]

    def to_json(self) -> dict:
        return {"ok": self.ok, "sharpness": round(self.sharpness, 1), "mean": round(self.mean, 1),
                "clipped_share": round(self.clipped_share, 4), "problems": list(self.problems)}


class QualityGate:
    """Measures on a grey copy at most 512 px wide so the cost does not grow with camera resolution."""

    def __init__(self, min_sharpness: float = 8.0, min_mean: float = 35.0, max_mean: float = 225.0,
                 max_clipped_share: float = 0.25) -> None:
        self.min_sharpness = min_sharpness
        self.min_mean = min_mean
        self.max_mean = max_mean
        self.max_clipped_share = max_clipped_share

    def check(self, image: np.ndarray) -> QualityVerdict:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if grey.shape[1] > 512:
            f = 512 / grey.shape[1]
            grey = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        sharpness = float(cv2.Laplacian(grey, cv2.CV_32F).var())
        mean = float(grey.mean())
        clipped = float((grey >= 250).mean())
        problems = []
        if sharpness < self.min_sharpness:
            problems.append(f"blurred (sharpness {sharpness:.0f} < {self.min_sharpness:.0f}): hold still, refocus, retake")
        if mean < self.min_mean:
            problems.append(f"under-exposed (mean {mean:.0f} < {self.min_mean:.0f}): add light, retake")
        if mean > self.max_mean:
            problems.append(f"over-exposed (mean {mean:.0f} > {self.max_mean:.0f}): reduce exposure, retake")
        if clipped > self.max_clipped_share:
            problems.append(f"glare ({clipped:.0%} of pixels washed out): tilt the item or the light, retake")
        return QualityVerdict(not problems, sharpness, mean, clipped, tuple(problems))
