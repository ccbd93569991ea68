"""Reference difference: what differs between a returned view and its aligned catalogue view.

The reference is warped into the returned view's pixels (the homography from verified matches /
alignment), so the heat map is in the input image's coordinates. Two cues, each in [0, 1]:
structure (1 - local SSIM of exposure-matched grey, Gaussian window) and colour (local ΔE00 of
lightly blurred, exposure-matched Lab, 20 ΔE = 1). Where the reference has product and the return has
none, the part is missing (1). Regions above ``threshold`` become findings with boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.colour import bgr_to_lab_d50, delta_e_ciede2000


@dataclass(frozen=True, slots=True)
class DifferenceRegion:
    box_xyxy: tuple[float, float, float, float]
    score: float
    kind: str  # "missing_part" or "damage"
    area_share: float  # region area / product area

    def to_json(self) -> dict:
        return {"box_xyxy": [round(v, 1) for v in self.box_xyxy], "score": round(self.score, 4), "kind": self.kind}


@dataclass(frozen=True, slots=True)
class DifferenceResult:
    heatmap: np.ndarray  # float32 in [0, 1], the query image's size
    regions: tuple[DifferenceRegion, ...]


def _ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), sigma)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a * mu_a
    vb = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))


def reference_difference(q_img: np.ndarray, q_mask: np.ndarray, ref_img: np.ndarray, ref_mask: np.ndarray,
                         query_to_ref: np.ndarray, threshold: float = 0.5, min_area: int = 60) -> DifferenceResult:
    h, w = q_mask.shape
    Hinv = np.linalg.inv(query_to_ref)
    ref_w = cv2.warpPerspective(ref_img, Hinv, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    ref_m = cv2.warpPerspective(ref_mask, Hinv, (w, h), flags=cv2.INTER_NEAREST)
    both = (q_mask > 0) & (ref_m > 0)
    heat = np.zeros((h, w), np.float32)
    if both.sum() < 100:
        return DifferenceResult(heat, ())
    # Work on the product's bounding box only: most of a frame is bench.
    x, y, bw, bh = cv2.boundingRect(((q_mask > 0) | (ref_m > 0)).astype(np.uint8))
    sl = np.s_[y:y + bh, x:x + bw]
    q = cv2.GaussianBlur(q_img[sl], (0, 0), 1.2).astype(np.float32)
    r = cv2.GaussianBlur(ref_w[sl], (0, 0), 1.2).astype(np.float32)
    inner = cv2.erode(both[sl].astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    sel = inner if inner.sum() > 50 else both[sl]
    # One exposure gain (median ratio of grey) so shading and exposure are not differences.
    qg, rg = q.mean(axis=2), r.mean(axis=2)
    gain = float(np.median(rg[sel]) / max(np.median(qg[sel]), 1.0))
    q = np.clip(q * gain, 0, 255)
    qg = qg * gain
    struct = np.clip((1.0 - _ssim_map(qg, rg)) / 1.2, 0, 1)
    de = delta_e_ciede2000(bgr_to_lab_d50(q.astype(np.uint8)), bgr_to_lab_d50(r.astype(np.uint8)))
    colour = np.clip(de / 20.0, 0, 1).astype(np.float32)
    local = np.maximum(struct, colour)
    # Misalignment leaves thin slivers along edges: a small opening keeps only blobs.
    local = cv2.morphologyEx(local, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    local = np.where(inner, local, local * 0.5)
    region = np.zeros_like(heat[sl])
    region[both[sl]] = local[both[sl]]
    missing = (ref_m[sl] > 0) & ~(cv2.dilate(q_mask[sl], np.ones((9, 9), np.uint8)) > 0)
    missing = cv2.morphologyEx(missing.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8)) > 0
    region[missing] = 1.0
    heat[sl] = region
    heat = cv2.GaussianBlur(heat, (0, 0), 2.0)
    area = max(1.0, float((ref_m > 0).sum()))
    regions = []
    n, labels, stats, _ = cv2.connectedComponentsWithStats((heat > threshold).astype(np.uint8))
    miss_full = np.zeros((h, w), bool)
    miss_full[sl] = missing
    for i in range(1, n):
        x0, y0, ww, hh, a = stats[i]
        if a < min_area:
            continue
        blob = labels == i
        kind = "missing_part" if miss_full[blob].mean() > 0.5 else "damage"
        regions.append(DifferenceRegion((float(x0), float(y0), float(x0 + ww), float(y0 + hh)),
                                        float(heat[blob].mean()), kind, a / area))
    regions.sort(key=lambda r: -r.score)
    return DifferenceResult(heat, tuple(regions))
