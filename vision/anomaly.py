"""PatchCore-style anomaly scoring against a per-SKU memory bank of good-image patch features.

Each good image contributes its backbone patch features to the SKU's bank; a query patch's score is
its nearest-neighbour distance to that bank, upsampled and Gaussian-smoothed into a heat map as in
PatchCore/anomalib. The image score is the heat map's maximum. The threshold comes from good images
only: leave-one-out image scores, a high quantile plus a margin, so no defect examples are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

PatchFn = Callable[[np.ndarray], np.ndarray]  # bgr -> (H', W', C) features


@dataclass(frozen=True, slots=True)
class AnomalyResult:
    heatmap: np.ndarray  # (H, W) float32, image resolution
    score: float  # max of the heat map
    threshold: float
    boxes: tuple[tuple[int, int, int, int], ...]  # x, y, w, h of regions above threshold

    @property
    def anomalous(self) -> bool:
        return self.score > self.threshold


def _nn_distance(feats: np.ndarray, bank: np.ndarray) -> np.ndarray:
    # Squared-distance expansion avoids materialising an (n, m, C) tensor.
    d2 = (feats ** 2).sum(1)[:, None] - 2.0 * feats @ bank.T + (bank ** 2).sum(1)[None, :]
    return np.sqrt(np.maximum(d2.min(1), 0.0))


@dataclass(slots=True)
class MemoryBank:
    """Growable bank of one SKU's good patch features (mutable by design: add_good grows it)."""

    patch_fn: PatchFn
    per_image: list[np.ndarray] = field(default_factory=list)
    sigma: float = 4.0
    margin: float = 1.1

    def add_good(self, bgr: np.ndarray) -> None:
        f = self.patch_fn(bgr)
        self.per_image.append(f.reshape(-1, f.shape[-1]).astype(np.float32))

    def _heat(self, bgr: np.ndarray, bank: np.ndarray) -> np.ndarray:
        f = self.patch_fn(bgr)
        d = _nn_distance(f.reshape(-1, f.shape[-1]).astype(np.float32), bank).reshape(f.shape[:2])
        up = cv2.resize(d.astype(np.float32), (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
        return cv2.GaussianBlur(up, (0, 0), self.sigma)

    def threshold(self, goods: list[np.ndarray]) -> float:
        """Leave-one-out max scores of the good images that built the bank, quantile 0.98 times margin."""
        if len(self.per_image) < 2:
            raise ValueError("need at least two good images to calibrate")
        scores = []
        for i, g in enumerate(goods):
            rest = np.concatenate([p for j, p in enumerate(self.per_image) if j != i])
            scores.append(float(self._heat(g, rest).max()))
        return float(np.quantile(scores, 0.98) * self.margin)

    def score(self, bgr: np.ndarray, threshold: float) -> AnomalyResult:
        heat = self._heat(bgr, np.concatenate(self.per_image))
        n, _, stats, _ = cv2.connectedComponentsWithStats((heat > threshold).astype(np.uint8))
        boxes = tuple(tuple(int(v) for v in stats[i, :4]) for i in range(1, n))
        return AnomalyResult(heat, float(heat.max()), threshold, boxes)
