"""Catalogue comparison, first version: is it the right item (identity), and is its colour right (ΔE00)?

Segments the product from the bench, white-balances on the bench (its calibrated neutral grey), then
compares a hue-saturation histogram with the catalogue's reference views and the product's median
CIELAB with the catalogue colour. Reference features are computed once per SKU and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import cv2
import numpy as np

from calibration.colour import bgr_to_lab_d50, delta_e_ciede2000
from station.domain import CatalogueItem, Finding, FindingSource, Frame
from vision.catalogue import Catalogue, product_lab


@dataclass(frozen=True, slots=True)
class Comparison:
    findings: tuple[Finding, ...]
    identity_score: float
    delta_e00: float | None
    measured_lab: tuple[float, float, float] | None
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"identity": {"score": round(self.identity_score, 4)},
                "colour": {"delta_e00": None if self.delta_e00 is None else round(self.delta_e00, 3),
                           "lab": None if self.measured_lab is None else [round(v, 2) for v in self.measured_lab]},
                **self.details}


class Comparer(Protocol):
    def compare(self, item: CatalogueItem, frames: Sequence[Frame]) -> Comparison: ...


def segment_product(image: np.ndarray, border: int = 8, threshold: float = 22.0) -> tuple[np.ndarray, np.ndarray]:
    """Foreground mask of the item against a plain bench, and the bench's median BGR colour."""
    edge = np.concatenate([image[:border].reshape(-1, 3), image[-border:].reshape(-1, 3),
                           image[:, :border].reshape(-1, 3), image[:, -border:].reshape(-1, 3)])
    bench = np.median(edge, axis=0)
    dist = np.linalg.norm(image.astype(np.float32) - bench.astype(np.float32), axis=2)
    mask = (dist > threshold).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if n <= 1:
        return np.zeros(mask.shape, np.uint8), bench
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == largest).astype(np.uint8) * 255, bench


def _hs_histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Hue-saturation histogram of chromatic pixels plus a brightness histogram of near-grey ones
    (their hue is noise), smoothed so small lighting shifts move mass to neighbours, not away."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    chromatic = mask & ((hsv[..., 1] >= 40) & (hsv[..., 2] >= 40)).astype(np.uint8) * 255
    grey = mask & ~chromatic
    hs = cv2.calcHist([hsv], [0, 1], chromatic, [18, 8], [0, 180, 40, 256])
    hs = cv2.GaussianBlur(hs, (3, 3), 0.8, borderType=cv2.BORDER_WRAP if False else cv2.BORDER_REPLICATE)
    v = cv2.calcHist([hsv], [2], grey, [8], [0, 256])
    v = cv2.GaussianBlur(v, (1, 3), 0.8)
    hist = np.concatenate([hs.ravel(), v.ravel()]).astype(np.float32)
    total = hist.sum()
    return hist / total if total > 0 else hist


def white_balance(image: np.ndarray, bench_bgr: np.ndarray, bench_reference: float) -> np.ndarray:
    gain = bench_reference / np.maximum(bench_bgr.astype(np.float32), 1.0)
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


@dataclass(slots=True)
class _Reference:
    histograms: list[np.ndarray]
    thumbnails: list[np.ndarray]


def _thumbnail(image: np.ndarray, mask: np.ndarray, size: int = 24) -> np.ndarray:
    """Tiny Lab image of the product's bounding box (background set to mid grey): colour layout and
    outline in one descriptor. Lightness is down-weighted; shading varies more than hue."""
    x, y, w, h = cv2.boundingRect(mask)
    crop = image[y:y + h, x:x + w].copy()
    crop[mask[y:y + h, x:x + w] == 0] = (128, 128, 128)
    lab = bgr_to_lab_d50(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)).astype(np.float32)
    lab[..., 0] *= 0.5
    return lab


def _similarity(hist: np.ndarray, thumb: np.ndarray, ref: "_Reference") -> float:
    """Best agreement with any reference view: colour distribution and colour layout must both agree."""
    best = 0.0
    for h, t in zip(ref.histograms, ref.thumbnails):
        layout = float(np.exp(-np.linalg.norm(thumb - t, axis=2).mean() / 12.0))
        best = max(best, float(np.sqrt(cv2.compareHist(hist, h, cv2.HISTCMP_INTERSECT) * layout)))
    return best


class BasicComparer:
    """Identity is judged against the whole catalogue (open-set): the claimed SKU must be the best match,
    or close to it, and match well in absolute terms. A swap for another catalogue item or for something
    that is in no catalogue both fail."""

    def __init__(self, catalogue: Catalogue, identity_threshold: float = 0.9, bench_grey: float = 200.0,
                 absolute_floor: float = 0.25) -> None:
        self.catalogue = catalogue
        self.identity_threshold = identity_threshold
        self.bench_grey = bench_grey
        self.absolute_floor = absolute_floor
        self._cache: dict[str, _Reference] = {}

    def _reference(self, item: CatalogueItem) -> _Reference:
        ref = self._cache.get(item.sku)
        if ref is None:
            hists, thumbs = [], []
            for i in range(len(item.reference_images)):
                img = cv2.imread(str(self.catalogue.image_path(item, i)), cv2.IMREAD_COLOR)
                if img is None:
                    continue
                mask, _ = segment_product(img)
                if mask.any():
                    hists.append(_hs_histogram(img, mask))
                    thumbs.append(_thumbnail(img, mask))
            ref = self._cache[item.sku] = _Reference(hists, thumbs)
        return ref

    def compare(self, item: CatalogueItem, frames: Sequence[Frame]) -> Comparison:
        views, labs = [], []
        for frame in frames:
            mask, bench = segment_product(frame.image)
            if mask.sum() < 255 * 400:
                continue  # nothing on the bench in this view
            balanced = white_balance(frame.image, bench, self.bench_grey)
            views.append((_hs_histogram(balanced, mask), _thumbnail(balanced, mask)))
            labs.append(product_lab(balanced, mask))
        findings: list[Finding] = []
        identity = 0.0
        best_sku = None
        if views:
            sims = {sku: max(_similarity(h, t, self._reference(other)) for h, t in views)
                    for sku, other in self.catalogue.items.items()}
            claimed = sims.get(item.sku, max(_similarity(h, t, self._reference(item)) for h, t in views))
            best_sku = max(sims, key=sims.get)
            relative = claimed / max(sims[best_sku], 1e-9)
            absolute = min(1.0, claimed / self.absolute_floor)
            identity = float(min(1.0, relative) * absolute)
            if identity < self.identity_threshold:
                looks = f"; looks most like {best_sku}" if best_sku != item.sku else ""
                findings.append(Finding("wrong_item", round(1.0 - identity, 4), FindingSource.CATALOGUE,
                                        value=round(identity, 4),
                                        detail=f"identity score {identity:.2f} below {self.identity_threshold}{looks}"))
        delta_e = measured = None
        if labs and item.reference_lab is not None:
            measured_arr = np.median(np.stack(labs), axis=0)
            measured = tuple(float(v) for v in measured_arr)
            delta_e = float(delta_e_ciede2000(measured_arr, np.array(item.reference_lab.as_tuple())))
            # Reported as a measurement; the rules decide against the category's tolerance.
            findings.append(Finding("colour_mismatch", min(1.0, 0.5 + delta_e / 20), FindingSource.CATALOGUE,
                                    value=round(delta_e, 3), detail=f"ΔE00 {delta_e:.2f} vs catalogue"))
        return Comparison(tuple(findings), identity, delta_e, measured,
                          {"views_compared": len(views), "best_match_sku": best_sku})
