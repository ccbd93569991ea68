"""Catalogue comparison, first version: is it the right item (identity), and is its colour right (ΔE00)?

Segments the product from the bench, white-balances on the bench (its calibrated neutral grey), then
compares a hue-saturation histogram with the catalogue's reference views and the product's median
CIELAB with the catalogue colour. Reference features are computed once per SKU and cached.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, Sequence

import cv2
import numpy as np

from calibration.colour import bgr_to_lab_d50, delta_e_ciede2000, lab_to_xyz_d50, xyz_to_lab_d50
from station.domain import CatalogueItem, Finding, FindingSource, Frame
from vision.catalogue import Catalogue, product_lab


@dataclass(frozen=True, slots=True)
class Comparison:
    findings: tuple[Finding, ...]
    identity_score: float
    delta_e00: float | None
    measured_lab: tuple[float, float, float] | None
    details: dict = field(default_factory=dict)
    # The outlined views (image, product mask) as compared: what an accepted return adds to its SKU's memory
    # of good appearance. Not part of the JSON.
    outlined_views: tuple = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict:
        return {"identity": {"score": round(self.identity_score, 4)},
                "colour": {"delta_e00": None if self.delta_e00 is None else round(self.delta_e00, 3),
                           "lab": None if self.measured_lab is None else [round(v, 2) for v in self.measured_lab]},
                **self.details}


class Comparer(Protocol):
    def compare(self, item: CatalogueItem, frames: Sequence[Frame], presentation: np.ndarray | None = None,
                colour_tolerance: float | None = None) -> Comparison: ...


DEFAULT_COLOUR_TOLERANCE = 3.0  # ΔE00, the shipped rules' default (settings.colour_tolerance_de00.default)


@dataclass(frozen=True, slots=True)
class PresentationCheck:
    """The streamer's presentation image against the catalogue: its dominant product colour as the viewer
    saw it (no white balance, no colour correction: a filter is exactly what is measured), against the
    catalogue's colour measured the same way on the matching catalogue image.

    ``delta_e00`` (decisive) matches exposure first (one gain in linear light, as for the station's own views):
    a brighter or darker shot is not a misrepresentation, a shift in hue, saturation or white balance (a
    filter, an exaggerated colour) is. ``delta_e00_raw`` is without that gain."""

    delta_e00: float
    delta_e00_raw: float
    lab: tuple[float, float, float]  # presented dominant colour, CIELAB D50
    reference_lab: tuple[float, float, float]  # the catalogue's, measured like-for-like on its image
    tolerance: float
    located: str  # "features": found by verified matches with a catalogue view; "outline": by segmentation

    @property
    def mismatch(self) -> bool:
        return self.delta_e00 > self.tolerance

    def to_json(self) -> dict:
        return {"delta_e00": round(self.delta_e00, 3), "mismatch": self.mismatch,
                "delta_e00_raw": round(self.delta_e00_raw, 3), "lab": [round(v, 2) for v in self.lab],
                "reference_lab": [round(v, 2) for v in self.reference_lab], "tolerance": self.tolerance,
                "located": self.located}

    def finding(self) -> Finding | None:
        """A ``presentation_mismatch`` finding (value: ΔE00) when beyond tolerance, else None."""
        if not self.mismatch:
            return None
        return Finding("presentation_mismatch", min(1.0, 0.5 + self.delta_e00 / 20), FindingSource.CATALOGUE,
                       "presentation", value=round(self.delta_e00, 3),
                       detail=f"stream presentation ΔE00 {self.delta_e00:.2f} vs catalogue (tolerance "
                              f"{self.tolerance:g}): presented Lab {', '.join(f'{v:.1f}' for v in self.lab)}, "
                              f"catalogue Lab {', '.join(f'{v:.1f}' for v in self.reference_lab)}")


def exposure_matched(lab: np.ndarray, to: np.ndarray) -> np.ndarray:
    """``lab`` scaled by one gain in linear light (XYZ) so its luminance is that of ``to``."""
    xyz, ref = lab_to_xyz_d50(lab), lab_to_xyz_d50(to)
    return xyz_to_lab_d50(xyz * (ref[1] / max(xyz[1], 1e-6)))


def presentation_product_mask(image: np.ndarray, ref_views: Sequence[tuple[object, np.ndarray]] = ()
                              ) -> tuple[np.ndarray, str, int]:
    """Where the product is in a presentation image, and which catalogue view it matched (-1: none). First
    choice: a reference view of the claimed SKU matched by verified ORB matches (its outline warped into
    the presentation: works on a busy stream background); else the outline against the image border (a
    plain studio background). ``ref_views``: (ViewFeatures, reference mask) pairs."""
    full = np.full(image.shape[:2], 255, np.uint8)
    best_n, best_mask, best_i = 0, None, -1
    if ref_views:
        q = view_features(image, full)
        for i, (feats, ref_mask) in enumerate(ref_views):
            if feats is None:
                continue
            n, H = verified_matches(q, feats)
            if n >= 15 and n > best_n:
                warped = cv2.warpPerspective(ref_mask, np.linalg.inv(H), (image.shape[1], image.shape[0]),
                                             flags=cv2.INTER_NEAREST)
                if cv2.countNonZero(warped) >= 400:
                    best_n, best_mask, best_i = n, warped, i
    if best_mask is not None:
        return best_mask, "features", best_i
    mask, _, _ = segment_item(image)
    return mask, "outline", -1


def _add_presentation(pres: PresentationCheck | None, findings: list[Finding], details: dict) -> None:
    """A comparer's evidence of the presentation check, and its finding when beyond tolerance."""
    details["presentation"] = None if pres is None else pres.to_json()
    finding = None if pres is None else pres.finding()
    if finding is not None:
        findings.append(finding)


def check_presentation(image: np.ndarray, reference_lab: np.ndarray, tolerance: float,
                       ref_views: Sequence[tuple[object, np.ndarray]] = (),
                       ref_images: Sequence[np.ndarray] = ()) -> PresentationCheck | None:
    """ΔE00 between the presentation's dominant product colour and the catalogue's; None when no product
    can be found. With ``ref_images`` (the catalogue images of ``ref_views``) the catalogue colour is
    measured on the matching (else the first) image with the same procedure, so method bias cancels;
    without, ``reference_lab`` (the catalogue's published colour) is used."""
    mask, located, i = presentation_product_mask(image, ref_views)
    if cv2.countNonZero(mask) < 400:
        return None
    lab = product_lab(image, mask)
    ref = np.asarray(reference_lab, np.float64)
    if ref_images:
        img = ref_images[max(i, 0)]
        ref = product_lab(img, ref_views[max(i, 0)][1])
    raw = float(delta_e_ciede2000(lab, ref))
    de = float(delta_e_ciede2000(exposure_matched(lab, ref), ref))
    return PresentationCheck(de, raw, tuple(float(v) for v in lab), tuple(float(v) for v in ref),
                             float(tolerance), located)


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

    def compare(self, item: CatalogueItem, frames: Sequence[Frame], presentation: np.ndarray | None = None,
                colour_tolerance: float | None = None) -> Comparison:
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
        details = {"views_compared": len(views), "best_match_sku": best_sku}
        if presentation is not None and item.reference_lab is not None:
            pres = check_presentation(presentation, np.array(item.reference_lab.as_tuple()),
                                      DEFAULT_COLOUR_TOLERANCE if colour_tolerance is None else colour_tolerance)
            _add_presentation(pres, findings, details)
        return Comparison(tuple(findings), identity, delta_e, measured, details)


# ------------------------------------------------------------------------------ catalogue comparer v2


@dataclass(frozen=True, slots=True)
class SkuEvidence:
    """How well a set of returned views agrees with one catalogue SKU (its best view x reference pair)."""

    inliers: int  # RANSAC-verified ORB matches
    global_similarity: float  # colour distribution and layout (first version's cue)
    structure: float  # ZNCC of shading-free structure after alignment, in [-1, 1]
    delta_e00: float  # median ΔE00 of the aligned product pixels (exposure matched)
    overlap: float  # IoU of the aligned outlines
    best_view: int
    best_reference: int
    homography: np.ndarray | None  # query view -> reference image
    total_inliers: int = -1  # verified matches summed over all the returned views (-1: only this view's)

    def similarity(self) -> float:
        """One number in [0, 1]: aligned structure, outline and verified matches agree, times colour agreement.

        Verified matches count over all the returned views (each view against its most similar reference
        view): a print look-alike has the same outline, shading and colour, and only local features on its
        print tell it apart, in whichever views show the print; one view's count was too weak a cue
        (docs/vision.md)."""
        structure = max(0.0, self.structure)
        colour = float(np.exp(-max(0.0, self.delta_e00 - 3.0) / 5.0))
        n = self.inliers if self.total_inliers < 0 else self.total_inliers
        local = n / (n + 30.0)
        return float((0.7 * (0.83 * structure + 0.17 * self.overlap) + 0.3 * local) * colour)


@dataclass(frozen=True, slots=True)
class QueryView:
    image: np.ndarray  # white-balanced BGR (the raw frame when not segmented)
    mask: np.ndarray
    features: "ViewFeatures"
    view: str
    segmented: bool = True  # False: no product outline could be found; the whole frame, for retrieval only
    segmentation: str = "outline"  # how the outline was found, or why it failed
    # "plate": what differs from the view's empty-bench plate (calibration.background); "border": the image
    # border taken as the bench. plate_unused: why a stored plate was not used (None: none, or used).
    segmentation_method: str = "border"
    plate_unused: str | None = None


OUTLINE_MAX_SHARE = 0.85  # a "product" covering more of the frame than this is a failed segmentation
OUTLINE_MAX_BORDER = 0.5  # as is one touching more than this share of the image border


def outline_failure(mask: np.ndarray) -> str | None:
    """Why ``mask`` is not a product outline (the bench was not told apart from the product), or None."""
    share = cv2.countNonZero(mask) / mask.size
    if share > OUTLINE_MAX_SHARE:
        return f"segmentation failed: the outline covers {share:.0%} of the frame (no plain bench around the item)"
    rim = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    touching = float(np.count_nonzero(rim)) / rim.size
    if touching > OUTLINE_MAX_BORDER:
        return f"segmentation failed: the outline touches {touching:.0%} of the image border"
    return None


_MATCHER = None


def _matcher() -> cv2.DescriptorMatcher:
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)
    return _MATCHER


def verified_matches(query: "ViewFeatures", ref: "ViewFeatures", ratio: float = 0.8,
                     reproj_px: float = 6.0) -> tuple[int, np.ndarray | None]:
    """ORB matches (Lowe ratio test) kept by a RANSAC homography; returns (inliers, H query->ref)."""
    if len(query.descriptors) < 8 or len(ref.descriptors) < 8:
        return 0, None
    pairs = _matcher().knnMatch(query.descriptors, ref.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 8:
        return 0, None
    src = query.points[[m.queryIdx for m in good]]
    dst = ref.points[[m.trainIdx for m in good]]
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, reproj_px, maxIters=200, confidence=0.99)
    n = 0 if H is None or inl is None or not _plausible(H) else int(inl.sum())
    if n >= 12:
        return n, H
    # A homography's extra freedom lets a consensus of clustered or nearly collinear matches (one print
    # row) settle on a degenerate fit, which then counted 0 for a genuine item. An affine fit of the same
    # matches cannot; when the homography is weak, the better plausible one counts.
    A, ainl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=reproj_px, maxIters=500)
    if A is not None and ainl is not None and int(ainl.sum()) > n:
        A3 = np.vstack([A, [0.0, 0.0, 1.0]])
        if _plausible(A3):
            return int(ainl.sum()), A3
    return (n, H) if n else (0, None)


def _plausible(H: np.ndarray) -> bool:
    """Not a fold-over, a huge zoom, a strong stretch or a wild perspective: a real view of the item."""
    det = float(np.linalg.det(H[:2, :2]))
    if not (0.15 < det < 8.0) or np.abs(H[2, :2]).max() > 0.004:
        return False
    sv = np.linalg.svd(H[:2, :2], compute_uv=False)
    return bool(sv[0] / max(sv[1], 1e-9) < 1.6)


def _same_view(a, b) -> bool:
    return a.descriptors.shape == b.descriptors.shape and np.array_equal(a.descriptors, b.descriptors)


class CatalogueComparer:
    """Open-set identity from verified local features fused with global cues, reference difference,
    colour (ΔE00, optionally after a chart colour correction) and size (with a scale calibration).

    Reference features are cached on disk beside the catalogue (``vision.features.FeatureCache``) and in
    memory. Identity compares the returned views with a shortlist of the catalogue (global cues pick
    ``shortlist`` candidates, the claimed SKU always among them), so the cost grows slowly with the
    catalogue. The claimed SKU must match well in absolute terms and no other SKU may match clearly better.
    """

    def __init__(self, catalogue: Catalogue, identity_threshold: float = 0.9, bench_grey: float = 200.0,
                 shortlist: int = 3, mm_per_px: float | None = None, size_tolerance: float = 0.05,
                 colour_correction=None, difference: bool = True, min_inliers: float = 25.0,
                 intrinsics=None, retrieval: bool = True, unseen=None, background=None) -> None:
        self.catalogue = catalogue
        self.background = background  # calibration.background.BackgroundPlates of the camera, or None
        self.unseen = unseen  # vision.unseen.UnseenDamage: damage regions against the SKU's good appearance
        self.identity_threshold = identity_threshold
        self.bench_grey = bench_grey
        self.shortlist = shortlist
        self.mm_per_px = mm_per_px
        self.size_tolerance = size_tolerance
        self.colour_correction = colour_correction  # callable BGR uint8 -> BGR uint8, or None
        self.difference = difference
        self.min_inliers = min_inliers
        self.intrinsics = intrinsics  # calibration.intrinsics.Intrinsics: outlines undistorted before sizing
        self.align_size = 96
        self.retrieval = retrieval
        self._index = None
        self._refs: dict[str, list] = {}
        self._ref_images: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._cache = None

    # -- references
    def _features_of_file(self, path):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            return None
        mask, _, wb = segment_item(img)
        if not mask.any():
            return None
        return view_features(img, mask)

    def references(self, sku: str) -> list:
        refs = self._refs.get(sku)
        if refs is None:
            from vision.features import FeatureCache

            if self._cache is None:
                self._cache = FeatureCache(self.catalogue.root)
            item = self.catalogue.get(sku)
            refs = []
            for i in range(len(item.reference_images)):
                refs.append(self._cache.get(self.catalogue.image_path(item, i), self._features_of_file))
            self._refs[sku] = refs
        return refs

    def reference_image(self, sku: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        key = (sku, index)
        if key not in self._ref_images:
            img = cv2.imread(str(self.catalogue.image_path(self.catalogue.get(sku), index)), cv2.IMREAD_COLOR)
            mask, _, _ = segment_item(img)
            self._ref_images[key] = (img, mask)
        return self._ref_images[key]

    def warm(self) -> None:
        """Load (computing and caching where needed) every SKU's reference features."""
        for sku in self.catalogue.items:
            self.references(sku)

    # -- query
    def prepare(self, image: np.ndarray, view: str = "") -> QueryView | None:
        plated = self.background.segment(image, view, self.bench_grey) if self.background is not None else None
        if plated is not None and plated.mask is not None:
            mask, bench, balanced = plated.mask, plated.bench_bgr, plated.balanced
            method, unused = "plate", None
        else:  # no plate, or one that does not fit this frame (size, lighting drift): the border method
            mask, bench, balanced = segment_item(image, self.bench_grey)
            method, unused = "border", None if plated is None else plated.reason
        failure = outline_failure(mask)
        if failure is not None:
            # No bench to balance on and no outline: the frame as it is, for retrieval and verification only
            # (no colour, size or difference is measured on it).
            full = np.full(mask.shape, 255, np.uint8)
            raw = image if self.colour_correction is None else self.colour_correction(image)
            return QueryView(raw, full, view_features(raw, full), view, segmented=False, segmentation=failure,
                             segmentation_method=method, plate_unused=unused)
        if cv2.countNonZero(mask) < 400:
            return None  # nothing on the bench in this view
        if self.colour_correction is not None:
            balanced = self.colour_correction(balanced)
        return QueryView(balanced, mask, view_features(balanced, mask), view,
                         segmentation="plate" if method == "plate" else "outline", segmentation_method=method,
                         plate_unused=unused)

    def _reference_lab(self, sku: str) -> np.ndarray | None:
        item = self.catalogue.items[sku]
        if item.reference_lab is not None:
            return np.array(item.reference_lab.as_tuple())
        refs = [r for r in self.references(sku) if r is not None]
        return refs[0].lab if refs else None

    def canonical(self, sku: str, index: int):
        from vision.align import canonical_reference

        key = (sku, index, "canon")
        if key not in self._ref_images:
            img, mask = self.reference_image(sku, index)
            self._ref_images[key] = canonical_reference(img, mask, self.align_size)
        return self._ref_images[key]

    def evidence(self, views: Sequence[QueryView], sku: str, measured_lab: np.ndarray | None = None) -> SkuEvidence:
        from vision.align import align

        per_view: list[SkuEvidence] = []
        for vi, q in enumerate(views):
            refs = [(ri, r) for ri, r in enumerate(self.references(sku)) if r is not None]
            if not refs:
                continue
            sims = [(_pair_similarity(q.features, r), ri, r) for ri, r in refs]
            glob, ri, r = max(sims, key=lambda t: t[0])
            n, H = verified_matches(q.features, r)
            # Global cues barely tell some views apart (a bottle's front and side): when the most similar
            # reference view verifies poorly, the next distinct one (views can render alike) within 0.1
            # may be the view that shows the print.
            if n < 12:
                others = [t for t in sims if t[1] != ri and not _same_view(t[2], r)]
                runner_up = max(others, key=lambda t: t[0], default=None)
                if runner_up is not None and runner_up[0] >= glob - 0.1:
                    n2, H2 = verified_matches(q.features, runner_up[2])
                    if n2 >= 12 and n2 > n:
                        glob, ri, r = runner_up
                        n, H = n2, H2
            init = H if n >= 12 else None
            ref_img, ref_mask = self.reference_image(sku, ri)
            al = align(q.image, q.mask, self.canonical(sku, ri), ref_mask, init, self.align_size)
            per_view.append(SkuEvidence(n, glob, al.structure, al.delta_e00, al.overlap, vi, ri, al.query_to_ref))
        if not per_view:
            return SkuEvidence(0, 0.0, 0.0, 100.0, 0.0, -1, -1, None, 0)
        total = sum(e.inliers for e in per_view)
        return max((dataclasses.replace(e, total_inliers=total) for e in per_view), key=lambda e: e.similarity())

    def candidates(self, views: Sequence[QueryView], claimed: str, judgements: Sequence = ()) -> list[str]:
        """Claimed SKU plus the ``shortlist`` SKUs most like the returned views. With retrieval judgements
        those are the index's shortlist (one matrix product over every view); without, the outline cues rank
        every SKU, which reads every SKU's reference features: fine for a few hundred SKUs, not for 10,000."""
        if judgements:
            best: dict[str, int] = {}
            for j in judgements:
                for rank, sku in enumerate(j.shortlist):
                    best[sku] = min(best.get(sku, rank), rank)
            ranked = sorted(best, key=lambda s: best[s])
        else:
            ranked = sorted(self.catalogue.items, key=lambda s: -max(
                (_pair_similarity(q.features, r) for q in views for r in self.references(s) if r is not None),
                default=0.0))
        return [claimed] + [s for s in ranked if s != claimed][: self.shortlist]

    def identity(self, views: Sequence[QueryView], claimed: str) -> tuple[float, dict[str, SkuEvidence]]:
        score, ev, _ = self.identity_detail(views, claimed)
        return score, ev

    def retrieval_index(self):
        """The catalogue's pretrained-embedding index (vision.identity), persisted beside the catalogue."""
        if self._index is None:
            from vision.identity import build_catalogue_index

            self._index, _ = build_catalogue_index(
                self.catalogue, segment=lambda img: usable_outline(segment_item(img, self.bench_grey)[0]))
        return self._index

    def _reference_crop(self, sku: str, key: str) -> np.ndarray | None:
        from vision.embedding import crop_to_mask

        img, mask = self.reference_image(sku, int(key))
        return None if img is None else crop_to_mask(img, usable_outline(mask))

    def identity_detail(self, views: Sequence[QueryView], claimed: str):
        """(score, evidence per candidate SKU from the outline cues, retrieval judgements per view).

        With product outlines (a bench around the item) the outline cues (aligned structure, outline,
        verified ORB matches) and the pretrained retrieval are averaged; on views without an outline only
        retrieval counts: the outline cues mean nothing there."""
        seg = [v for v in views if v.segmented]
        judgements = self.retrieval_judgements(views, claimed)
        ev = {s: self.evidence(seg, s) for s in self.candidates(seg, claimed, judgements)} if seg else {}
        fused = identity_score(ev, claimed) if seg else None
        retrieval = float(np.mean([j.score for j in judgements])) if judgements else None
        return combined_identity(fused, retrieval), ev, judgements

    def retrieval_judgements(self, views: Sequence[QueryView], claimed: str, queries=None) -> list:
        """One vision.identity judgement per view (empty with retrieval off); ``queries``: the views' index
        queries when already computed (a benchmark re-scores several claims)."""
        if not self.retrieval:
            return []
        index = self.retrieval_index()
        if queries is None:
            queries = self.retrieval_queries(views)
        return [index.judge(q, None, claimed, crop_loader=self._reference_crop, query_local=ql) for q, ql in queries]

    def retrieval_queries(self, views: Sequence[QueryView]) -> list:
        from vision.identity import local_features

        index = self.retrieval_index()
        out = []
        for v in views:
            q = index.query(v.image, v.mask if v.segmented else None)
            out.append((q, local_features(q.crop)))
        return out

    def presentation(self, image: np.ndarray, sku: str, colour_tolerance: float | None = None
                     ) -> PresentationCheck | None:
        """The streamer's presentation image of ``sku`` against the catalogue colour (see ``check_presentation``)."""
        ref_lab = self._reference_lab(sku)
        if ref_lab is None:
            return None
        refs = [(i, r) for i, r in enumerate(self.references(sku)) if r is not None]
        ref_views = [(r, self.reference_image(sku, i)[1]) for i, r in refs]
        ref_images = [self.reference_image(sku, i)[0] for i, _ in refs]
        tol = DEFAULT_COLOUR_TOLERANCE if colour_tolerance is None else colour_tolerance
        return check_presentation(image, ref_lab, tol, ref_views, ref_images)

    def compare(self, item: CatalogueItem, frames: Sequence[Frame], presentation: np.ndarray | None = None,
                colour_tolerance: float | None = None) -> Comparison:
        """``presentation``: the streamer's presentation image, when the return carries one; a
        ``presentation_mismatch`` finding (value ΔE00) when its product colour is beyond ``colour_tolerance``
        (the category's, from the rules; default 3.0) of the catalogue colour. Evidence in
        ``details["presentation"]``."""
        views = [v for v in (self.prepare(f.image, f.view) for f in frames) if v is not None]
        findings: list[Finding] = []
        identity, best_sku, delta_e, measured = 0.0, None, None, None
        details: dict = {"views_compared": len(views)}
        if views:
            identity, ev, judgements = self.identity_detail(views, item.sku)
            if ev:
                best_sku = max(ev, key=lambda s: ev[s].similarity())
            else:  # no outline in any view: the retrieval's nearest SKU
                j = max(judgements, key=lambda j: j.claimed_similarity)
                best_sku = item.sku if j.retrieval_margin >= 0 or j.best_other_sku is None else j.best_other_sku
            details["best_match_sku"] = best_sku
            details["identity_retrieval"] = [{"view": v.view, **j.to_json()} for v, j in zip(views, judgements)]
            failed = [{"view": v.view, "reason": v.segmentation} for v in views if not v.segmented]
            if failed:
                details["segmentation_failed"] = failed
            details["segmentation"] = [{"view": v.view, "method": v.segmentation_method,
                                        **({"plate_unused": v.plate_unused} if v.plate_unused else {})} for v in views]
            outlined = [v for v in views if v.segmented]
            if identity < self.identity_threshold:
                looks = f"; looks most like {best_sku}" if best_sku != item.sku else ""
                findings.append(Finding("wrong_item", round(1.0 - identity, 4), FindingSource.CATALOGUE,
                                        value=round(identity, 4),
                                        detail=f"identity score {identity:.2f} below {self.identity_threshold}{looks}"))
            # Colour, difference and size need the product's outline; views without one measure none of them.
            measured_arr = np.median(np.stack([q.features.lab for q in outlined]), axis=0) if outlined else None
            if measured_arr is not None and item.reference_lab is not None:
                measured = tuple(float(v) for v in measured_arr)
                delta_e = float(delta_e_ciede2000(measured_arr, np.array(item.reference_lab.as_tuple())))
                findings.append(Finding("colour_mismatch", min(1.0, 0.5 + delta_e / 20), FindingSource.CATALOGUE,
                                        value=round(delta_e, 3), detail=f"ΔE00 {delta_e:.2f} vs catalogue"))
            if self.difference and identity >= self.identity_threshold:
                diffs, registrations = [], []
                for q in outlined:
                    reg, res = self.registered_difference(q, item.sku)
                    if reg is not None:
                        registrations.append({"view": q.view, **reg.to_json()})
                        if not reg.ok:
                            # The station could not see this view well enough to compare it: a supervisor
                            # looks (G-REGISTRATION-FAILED), instead of a heat map of the misalignment.
                            findings.append(Finding("registration_failed", 1.0, FindingSource.CATALOGUE, q.view,
                                                    detail=f"not compared with the catalogue view: {reg.detail}"))
                    if res is None:
                        continue
                    for region in res.regions:
                        diffs.append({"view": q.view, **region.to_json()})
                        if region.kind == "missing_part":
                            findings.append(Finding("missing_part", region.score, FindingSource.CATALOGUE, q.view,
                                                    region.box_xyxy, value=round(region.area_share, 4),
                                                    detail=f"{region.area_share:.0%} of the reference outline absent"))
                details["differences"] = diffs
                details["registration"] = registrations
            if self.unseen is not None and identity >= self.identity_threshold:
                # Against the claimed SKU's good appearance only when it is that SKU: another product's
                # memory would call the whole item damaged.
                anomalies = []
                for q in outlined:
                    va = self.unseen.score_view(item.sku, q.image, q.mask, q.view)
                    if va is None:
                        continue
                    anomalies.append(va.to_json())
                    for r in va.regions:
                        if r.kind == "missing_part":
                            if any(f.kind == "missing_part" and f.view == q.view and f.box_xyxy is not None
                                   and _boxes_overlap(f.box_xyxy, r.box_xyxy) for f in findings):
                                continue  # the reference difference already found it
                            # Value: the share of the catalogue outline absent, as for the reference difference's.
                            findings.append(Finding("missing_part", round(min(1.0, 0.5 + 0.5 * r.score), 4),
                                                    FindingSource.CATALOGUE, q.view, r.box_xyxy,
                                                    value=round(r.area_share, 4),
                                                    detail=f"{r.area_share:.0%} of {item.sku}'s catalogue outline "
                                                           f"shows bench here, and its good appearance differs "
                                                           f"around it ({r.score:.2f}x the threshold, "
                                                           f"{va.calibration.source} calibration)"))
                            continue
                        findings.append(Finding("damage", round(min(1.0, 0.5 + 0.5 * (r.score - 1.0)), 4),
                                                FindingSource.CATALOGUE, q.view, r.box_xyxy, value=round(r.score, 4),
                                                detail=f"differs from {item.sku}'s good appearance: "
                                                       f"{r.score:.2f}x the threshold over {r.area_share:.1%} of "
                                                       f"the product ({va.calibration.source} calibration)"))
                details["anomaly"] = anomalies
            size = self.size_of(outlined[0].mask) if self.mm_per_px and outlined else None
            if size is not None:
                details["size_mm"] = size
                dims = item.dimensions_mm
                if dims is not None:
                    err = size_error(size, dims.width, dims.height)
                    details["size_mm"]["relative_error"] = round(err, 4)
                    if err > self.size_tolerance:
                        findings.append(Finding("size_mismatch", min(1.0, 0.5 + err), FindingSource.CATALOGUE,
                                                value=round(err, 4),
                                                detail=f"measured {size['width']:.0f}x{size['height']:.0f} mm vs "
                                                       f"catalogue {dims.width:.0f}x{dims.height:.0f} mm"))
        if presentation is not None:
            pres = self.presentation(presentation, item.sku, colour_tolerance)
            _add_presentation(pres, findings, details)
        outlined_views = tuple((q.image, q.mask) for q in views if q.segmented) if views else ()
        return Comparison(tuple(findings), identity, delta_e, measured, details, outlined_views)

    def learn_good(self, sku: str, comparison: Comparison, source: str) -> int:
        """An accepted-good return's views join its SKU's memory of good appearance (see vision.unseen)."""
        if self.unseen is None or not comparison.outlined_views:
            return 0
        return self.unseen.learn_good(sku, list(comparison.outlined_views), source)

    def difference_for(self, q: QueryView, sku: str, ev: SkuEvidence | None = None):
        """Align this view to its most similar reference view of ``sku`` and find what differs; None when the
        registration failed (``registered_difference`` says why)."""
        return self.registered_difference(q, sku)[1]

    def registered_difference(self, q: QueryView, sku: str):
        """(vision.align.RegistrationResult, vision.difference.DifferenceResult or None) of this view against
        its most similar reference view of ``sku``; (None, None) when the SKU has no usable reference. The
        transform (verified ORB matches, else the outlines' boxes; ECC in the canonical frame; refined on
        the outlines) is checked before any difference is taken: a failed registration gives no heat map."""
        from vision.align import align, verify_registration
        from vision.difference import reference_difference, refine_outline

        refs = [(ri, r) for ri, r in enumerate(self.references(sku)) if r is not None]
        if not refs:
            return None, None
        ri, r = max(refs, key=lambda t: _pair_similarity(q.features, t[1]))
        n, H = verified_matches(q.features, r)
        ref_img, ref_mask = self.reference_image(sku, ri)
        features = n >= 12
        al = align(q.image, q.mask, self.canonical(sku, ri), ref_mask, H if features else None, self.align_size)
        H = refine_outline(q.mask, ref_mask, al.query_to_ref)
        grey = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)  # noqa: E731
        reg = verify_registration(grey(q.image), grey(ref_img), H, n if features else 0,
                                  "features" if features else "outline", q.mask, ref_mask,
                                  max_residual_px=STATION_MAX_RESIDUAL_PX, min_agreement=STATION_MIN_AGREEMENT,
                                  min_overlap=STATION_MIN_OVERLAP)
        if not reg.ok:
            return reg, None  # not aligned: a difference map would show the misalignment, not the item
        return reg, reference_difference(q.image, q.mask, ref_img, ref_mask, reg.query_to_ref, refine=False)

    def size_of(self, mask: np.ndarray) -> dict | None:
        if not self.mm_per_px:
            return None
        return outline_size_mm(mask, self.mm_per_px, self.intrinsics)


def _boxes_overlap(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


# What a view's registration to its catalogue view must meet before a difference is taken (measured on
# genuine station-camera items and painted missing parts, docs/vision.md): outlines overlapping by half (a
# missing part lowers the IoU and must stay a missing part), and structure moving at most 1.5x what the
# reference difference's own dense flow (16 px) takes up: a carton's top face seen from another height
# moves up to 23.5 px on genuine items, 23.3 px with a painted missing part. Structure agreement (ZNCC) is not
# required on the station: the generated garments' texture is drawn anew per shot, so genuine items reach
# -0.26.
STATION_MAX_RESIDUAL_PX = 24.0
STATION_MIN_AGREEMENT = -1.0
STATION_MIN_OVERLAP = 0.5


class HeatmapStatus(StrEnum):
    OK = "ok"
    NO_REFERENCE = "no_reference"  # the SKU is not in the catalogue, or has no usable reference image
    NO_ITEM = "no_item"  # nothing on the bench in this view (or an unusable frame)
    NOT_ALIGNED = "not_aligned"  # the view could not be aligned to a reference: a map would be noise
    NO_OUTLINE = "no_outline"  # the product could not be told apart from its background in this view


@dataclass(frozen=True, slots=True)
class ViewHeatmap:
    status: HeatmapStatus
    heatmap: np.ndarray | None = None  # float32 in [0, 1], the view's size; None unless status is OK
    regions: tuple = ()  # vision.difference.DifferenceRegion
    registration: object | None = None  # vision.align.RegistrationResult behind the map (or its failure)


def view_heatmap(comparer: "CatalogueComparer", image: np.ndarray, sku: str, view: str = "") -> ViewHeatmap:
    """Reference-difference heat map of one stored view against the catalogue's reference of ``sku``: the
    comparer's own ``prepare`` and ``difference_for`` (the path `station compare` and ``compare`` use)."""
    if sku not in comparer.catalogue.items or not any(r is not None for r in comparer.references(sku)):
        return ViewHeatmap(HeatmapStatus.NO_REFERENCE)
    q = comparer.prepare(image, view)
    if q is None:
        return ViewHeatmap(HeatmapStatus.NO_ITEM)
    if not q.segmented:
        return ViewHeatmap(HeatmapStatus.NO_OUTLINE)
    if comparer.unseen is not None:
        # What differs from the SKU's good appearance, once its memory is calibrated (0.5 = the threshold);
        # before that the aligned reference difference says more than an unthresholded map.
        va = comparer.unseen.score_view(sku, q.image, q.mask, view)
        if va is not None and va.calibration.threshold is not None:
            return ViewHeatmap(HeatmapStatus.OK, va.heatmap, va.regions)
    reg, diff = comparer.registered_difference(q, sku)
    if diff is None:
        return ViewHeatmap(HeatmapStatus.NOT_ALIGNED, registration=reg)
    return ViewHeatmap(HeatmapStatus.OK, diff.heatmap, diff.regions, reg)


def outline_size_mm(mask: np.ndarray, mm_per_px: float, intrinsics=None) -> dict:
    """Width and height of the item's outline (minimum-area rectangle), in mm, width <= height swapped to
    the longer side as height; also its axis-aligned box. Sides count whole pixels (the distance between
    the outermost pixel centres + 1). ``intrinsics`` (calibration.intrinsics.Intrinsics): the outline is
    undistorted first, as the scale was measured."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
    if intrinsics is not None:
        c = intrinsics.undistort_points(c, (mask.shape[1], mask.shape[0])).astype(np.float32)
    (_, _), (w, h), angle = cv2.minAreaRect(c)
    w, h = w + 1.0, h + 1.0
    bw, bh = (c.max(axis=0) - c.min(axis=0) + 1.0).tolist()
    return {"width": round(float(min(w, h)) * mm_per_px, 2), "height": round(float(max(w, h)) * mm_per_px, 2),
            "box_width": round(bw * mm_per_px, 2), "box_height": round(bh * mm_per_px, 2),
            "mm_per_px": mm_per_px}


def size_error(size: dict, width: float, height: float) -> float:
    """Largest relative error of the outline's sides against the catalogue's (orientation-free). The
    catalogue measures the upright item's box; a non-rectangular outline (sleeves, handles) has a smaller
    minimum-area rectangle at a tilt, so the better of that rectangle and the axis-aligned box counts."""
    ref = sorted([width, height])
    errors = []
    for keys in (("width", "height"), ("box_width", "box_height")):
        if all(k in size for k in keys):
            meas = sorted([size[keys[0]], size[keys[1]]])
            errors.append(max(abs(m - r) / r for m, r in zip(meas, ref)))
    return float(min(errors))


def segment_item(image: np.ndarray, bench_grey: float = 200.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product outline with holes filled, bench BGR, image white-balanced on the bench).

    The bench is the border's median colour. Pixels that differ from the bench are product, except
    neutral ones a little darker than the bench: that is the item's cast shadow. A very even border (a
    clean catalogue shot) gets a low threshold, so pale labels on a white background stay on the product.
    """
    b = 8
    sides = [image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3), image[:, :b].reshape(-1, 3),
             image[:, -b:].reshape(-1, 3)]
    edge = np.concatenate(sides)
    bench = np.median(edge, axis=0)
    even = float(edge.astype(np.float32).std(axis=0).max()) < 1.5
    level = float(bench.mean()) if even else bench_grey
    tones = [bench] if even else _bench_tones(bench, sides)
    fg, per_tone = None, []
    for tone in tones:
        gains = level / np.maximum(tone.astype(np.float64), 1.0)
        wb = cv2.merge([cv2.convertScaleAbs(ch, alpha=float(g)) for ch, g in zip(cv2.split(image), gains)])
        diff = cv2.absdiff(wb, np.full_like(wb, int(round(level))))
        dist = cv2.max(cv2.max(diff[..., 0], diff[..., 1]), diff[..., 2])
        near = dist <= (5 if even else 16)
        if fg is not None:
            # Another tone is bench only where it reaches the border: a pale product can share its colour.
            _, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
            rim = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            near = np.isin(labels, rim[rim > 0])
        bench_like = near
        if not even:
            hsv = cv2.cvtColor(wb, cv2.COLOR_BGR2HSV)
            shadow = (hsv[..., 1] < 16) & (hsv[..., 2] > 0.5 * level) & (hsv[..., 2] < 0.97 * level)
            bench_like = near | shadow
        per_tone.append((tone, wb, near))
        fg = ~bench_like if fg is None else fg & ~bench_like
    mask = fg.astype(np.uint8) * 255
    raw = mask
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    # The opening removes speckle but also thin tips (garment sleeves: 1-2 % of their width); grow the
    # survivors back into the thresholded pixels for a few px (reconstruction), which isolated speckle
    # cannot use.
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(_TIP_RECOVERY_PX):
        mask = cv2.bitwise_and(cv2.dilate(mask, kernel), raw)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    if contours:
        largest = max(contours, key=cv2.contourArea)
        if even:
            # A clean shot: print as pale as the background may split the product into bands; keep
            # every sizeable part.
            parts = [c for c in contours if cv2.contourArea(c) > 0.002 * mask.size] or [largest]
        else:
            # A product of separate parts (a plush's paws) on the bench: keep sizeable parts close to the
            # largest; markers and clutter further away stay out.
            parts = [largest] + _nearby_parts(contours, largest)
        if len(parts) > 1:
            cv2.drawContours(filled, parts, -1, 255, -1)
            filled = cv2.morphologyEx(filled, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))  # bridge them
            contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            filled[:] = 0
            # A gap wider than the bridge leaves parts apart: fill them all, the outline is their union.
            keep = [c for c in contours if cv2.contourArea(c) >= 0.5 * min(cv2.contourArea(p) for p in parts)]
            cv2.drawContours(filled, keep or [max(contours, key=cv2.contourArea)], -1, 255, -1)
        else:
            cv2.drawContours(filled, [largest], -1, 255, -1)
    bench, wb = per_tone[0][0], per_tone[0][1]
    if len(per_tone) > 1 and filled.any():
        # White balance on the tone the product lies on (it is lit like that part of the bench).
        ring = cv2.dilate(filled, np.ones((15, 15), np.uint8)) > 0
        ring &= filled == 0
        bench, wb, _ = max(per_tone, key=lambda t: int(np.count_nonzero(t[2] & ring)))
    return filled, bench, wb


def _bench_tones(bench: np.ndarray, sides: list[np.ndarray]) -> list[np.ndarray]:
    """The border median, plus the colour of any whole image side that is even but clearly another tone
    than the bench (a second surface along one edge, or fill where the view was shifted): that is bench
    too, not product. A product cut by a side never makes the whole side even."""
    tones = [bench]
    for px in sides:
        tone = np.median(px, axis=0)
        if float(px.astype(np.float32).std(axis=0).max()) < 8.0 and all(
                float(np.abs(tone - t).max()) > 16 for t in tones):
            tones.append(tone)
    return tones


_TIP_RECOVERY_PX = 6


def _nearby_parts(contours, largest) -> list:
    """Contours of at least 3 % of the largest's area whose box lies within 6 % of its size of its box."""
    area = cv2.contourArea(largest)
    x, y, w, h = cv2.boundingRect(largest)
    gap = 0.06 * max(w, h)
    out = []
    for c in contours:
        if c is largest or cv2.contourArea(c) < 0.03 * area:
            continue
        cx, cy, cw, ch = cv2.boundingRect(c)
        dx = max(x - (cx + cw), cx - (x + w), 0)
        dy = max(y - (cy + ch), cy - (y + h), 0)
        if max(dx, dy) <= gap:
            out.append(c)
    return out


def view_features(image: np.ndarray, mask: np.ndarray):
    from vision.features import ViewFeatures, local_features

    pts, desc = local_features(image, mask)
    return ViewFeatures(pts, desc, _hs_histogram(image, mask), _thumbnail(image, mask),
                        product_lab(image, mask), cv2.boundingRect(mask), (image.shape[1], image.shape[0]))


def _pair_similarity(q, r) -> float:
    layout = float(np.exp(-np.linalg.norm(q.thumbnail - r.thumbnail, axis=2).mean() / 12.0))
    return float(np.sqrt(cv2.compareHist(q.histogram, r.histogram, cv2.HISTCMP_INTERSECT) * layout))


# The mean of the outline cues' score and the retrieval score, less this, is the identity: calibrated on the
# generated look-alike set (`station bench vision`), where the mean needs 0.922 for FPR <= 0.02.
COMBINED_OFFSET = 0.022


def combined_identity(fused: float | None, retrieval: float | None) -> float:
    """The identity score from the outline cues' score and the retrieval score, either of which may be absent."""
    if fused is not None and retrieval is not None:
        return float(np.clip((fused + retrieval) / 2 - COMBINED_OFFSET, 0.0, 1.0))
    return fused if fused is not None else (retrieval if retrieval is not None else 0.0)


def usable_outline(mask: np.ndarray) -> np.ndarray | None:
    """The mask when it is a product outline, else None (the whole image is used)."""
    return mask if mask is not None and mask.any() and outline_failure(mask) is None else None


IDENTITY_FLOOR = 0.45  # the claimed SKU's similarity must reach this in absolute terms
IDENTITY_OFFSET = -0.04  # calibrated on the generated look-alike set (`station bench vision`): the default
# threshold 0.9 then sits in the middle of the ROC's plateau (TPR 0.96, FPR ~0.01)


def identity_score(ev: dict[str, SkuEvidence], claimed: str, floor: float = IDENTITY_FLOOR) -> float:
    """0.9 + the smaller of (claimed similarity - floor) and (claimed - best other candidate), minus
    IDENTITY_OFFSET, clipped to [0, 1]: at the default threshold 0.9 the claimed SKU must match well and no
    other candidate may match clearly (more than the offset) better."""
    sc = ev[claimed].similarity()
    best_other = max((e.similarity() for s, e in ev.items() if s != claimed), default=0.0)
    raw = min(sc - floor, sc - best_other) - IDENTITY_OFFSET
    return float(np.clip(0.9 + raw, 0.0, 1.0))
