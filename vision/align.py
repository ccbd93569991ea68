"""Alignment of a returned view to a catalogue view, and dense verification in the aligned frame.

Both images are mapped into a small canonical frame around the reference product (``size`` pixels on
its longer side). The initial query->reference transform comes from verified ORB matches when there are
enough, else from the product outlines' bounding boxes; ECC (``cv2.findTransformECC``) then refines it
on shading-free structure images. In the aligned frame three things are measured: structure agreement
(zero-mean normalised cross-correlation of high-passed grey), colour agreement (median ΔE00 after one
exposure gain) and outline overlap (IoU of the product masks).

Registration for pixel-wise comparison (``register_images``, ``verify_registration``) says when it fails:
a ``RegistrationResult`` is ok, or failed with a reason (too few inliers, degenerate homography, residual too
high, overlap too small) and the numbers behind it; a failed one carries no transform, so nobody diffs two
images that are not aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from calibration.colour import bgr_to_lab_d50, delta_e_ciede2000


@dataclass(frozen=True, slots=True)
class Canonical:
    """A product view resampled into the canonical frame of a reference."""

    bgr: np.ndarray  # (s, s, 3) uint8
    structure: np.ndarray  # (s, s) float32: grey minus its large-scale shading
    mask: np.ndarray  # (s, s) uint8
    to_canonical: np.ndarray  # 3x3: source image pixels -> canonical pixels


@dataclass(frozen=True, slots=True)
class Alignment:
    query_to_ref: np.ndarray  # 3x3 homography, query image -> reference image pixels
    structure: float  # ZNCC in [-1, 1]
    delta_e00: float  # median over the overlap
    overlap: float  # IoU of the product masks
    refined: bool  # ECC converged


def structure_image(grey: np.ndarray, mask: np.ndarray | None = None, sigma: float = 1.0) -> np.ndarray:
    """Grey minus its large-scale shading; outside ``mask`` set to 0 so backgrounds never differ."""
    g = grey.astype(np.float32)
    if mask is not None:
        g = np.where(mask > 0, g, 0.0).astype(np.float32)
    g = cv2.GaussianBlur(g, (0, 0), sigma)
    return g - cv2.GaussianBlur(g, (0, 0), 8.0)


def canonical_transform(mask: np.ndarray, size: int, pad: float = 0.08) -> np.ndarray:
    """Scale-and-shift that maps the product's padded bounding box into a size x size frame."""
    x, y, w, h = cv2.boundingRect(mask)
    side = max(w, h) * (1 + 2 * pad)
    k = size / side
    cx, cy = x + w / 2, y + h / 2
    return np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy], [0, 0, 1]], np.float64)


def canonical_reference(image: np.ndarray, mask: np.ndarray, size: int = 96) -> Canonical:
    T = canonical_transform(mask, size)
    bgr = cv2.warpPerspective(image, T, (size, size), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
    m = cv2.warpPerspective(mask, T, (size, size), flags=cv2.INTER_NEAREST)
    return Canonical(bgr, structure_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), m), m, T)


def box_homography(query_mask: np.ndarray, ref_mask: np.ndarray) -> np.ndarray:
    """Query -> reference from the outlines' bounding boxes (axis scale + shift)."""
    qx, qy, qw, qh = cv2.boundingRect(query_mask)
    rx, ry, rw, rh = cv2.boundingRect(ref_mask)
    sx, sy = rw / max(qw, 1), rh / max(qh, 1)
    return np.array([[sx, 0, rx - sx * qx], [0, sy, ry - sy * qy], [0, 0, 1]], np.float64)


def _zncc(a: np.ndarray, b: np.ndarray, sel: np.ndarray) -> float:
    if sel.sum() < 50:
        return 0.0
    x, y = a[sel], b[sel]
    x = x - x.mean()
    y = y - y.mean()
    d = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / d) if d > 1e-6 else 0.0


def exposure_matched_lab(q_bgr: np.ndarray, r_bgr: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lab of the overlap's pixels, the query scaled by one gain (in linear light) to the reference's
    exposure: shading and exposure differences are not colour differences."""
    q = q_bgr[sel].astype(np.float32)
    r = r_bgr[sel].astype(np.float32)
    lin_q = (q / 255.0) ** 2.2
    lin_r = (r / 255.0) ** 2.2
    gain = float(np.median(lin_r.sum(1) + 1e-4) / max(np.median(lin_q.sum(1) + 1e-4), 1e-6))
    q2 = np.clip(255.0 * (lin_q * gain) ** (1 / 2.2), 0, 255).astype(np.uint8)
    return bgr_to_lab_d50(q2), bgr_to_lab_d50(r.astype(np.uint8))


def align(query_bgr: np.ndarray, query_mask: np.ndarray, ref: Canonical, ref_mask_full: np.ndarray,
          init: np.ndarray | None = None, size: int = 96, ecc_iterations: int = 20) -> Alignment:
    """Align a query view to a reference (``init``: query->reference homography, e.g. from ORB)."""
    H0 = init if init is not None else box_homography(query_mask, ref_mask_full)
    T = ref.to_canonical @ H0
    q = cv2.warpPerspective(query_bgr, T, (size, size), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
    qm = cv2.warpPerspective(query_mask, T, (size, size), flags=cv2.INTER_NEAREST)
    q_grey = cv2.cvtColor(q, cv2.COLOR_BGR2GRAY)
    qs = structure_image(q_grey, qm)
    warp = np.eye(2, 3, dtype=np.float32)
    refined = False
    try:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ecc_iterations, 1e-4)
        r_grey = cv2.cvtColor(ref.bgr, cv2.COLOR_BGR2GRAY)
        _, warp = cv2.findTransformECC(structure_image(r_grey, ref.mask, 2.0), structure_image(q_grey, qm, 2.0),
                                       warp, cv2.MOTION_AFFINE, criteria,
                                       cv2.dilate(ref.mask, np.ones((9, 9), np.uint8)), 1)
        refined = bool(np.all(np.isfinite(warp))) and abs(np.linalg.det(warp[:, :2]) - 1) < 0.35
    except cv2.error:
        refined = False  # ECC did not converge: keep the initial transform
    if refined:
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        q = cv2.warpAffine(q, warp, (size, size), flags=flags)
        qm = cv2.warpAffine(qm, warp, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        qs = structure_image(cv2.cvtColor(q, cv2.COLOR_BGR2GRAY), qm)
        # canonical <- query is: inverse(warp) applied after T; warp maps ref->query canonical coordinates
        W = np.vstack([warp, [0, 0, 1]]).astype(np.float64)
        T = np.linalg.inv(W) @ T
    inner_r = cv2.erode(ref.mask, np.ones((5, 5), np.uint8)) > 0
    inner_q = cv2.erode(qm, np.ones((5, 5), np.uint8)) > 0
    sel = inner_r & inner_q
    inter = float(((ref.mask > 0) & (qm > 0)).sum())
    union = float(((ref.mask > 0) | (qm > 0)).sum())
    overlap = inter / union if union else 0.0
    structure = _zncc(ref.structure, qs, sel)
    if sel.sum() >= 50:
        step = max(1, int(sel.sum()) // 1500)
        idx = np.flatnonzero(sel)[::step]
        sub = np.zeros(sel.size, bool)
        sub[idx] = True
        ql, rl = exposure_matched_lab(q, ref.bgr, sub.reshape(sel.shape))
        de = float(np.median(delta_e_ciede2000(ql, rl)))
    else:
        de = 100.0
    query_to_ref = np.linalg.inv(ref.to_canonical) @ T
    return Alignment(query_to_ref, structure, de, overlap, refined)


# ------------------------------------------------------------------------------------------ registration


class RegistrationStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


class RegistrationFailureReason(StrEnum):
    TOO_FEW_INLIERS = "too_few_inliers"  # not enough verified feature matches for a homography
    DEGENERATE_HOMOGRAPHY = "degenerate_homography"  # a fold-over, huge zoom, strong stretch or wild perspective
    RESIDUAL_TOO_HIGH = "residual_too_high"  # after warping, structure still moves (dense flow) or disagrees
    OVERLAP_TOO_SMALL = "overlap_too_small"  # too little of the reference is covered by the warped query


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """One registration's outcome. A failed one has no transform: callers must not diff the images (a
    heat map of misalignment is worse than none); its reason and detail say why, with the numbers."""

    status: RegistrationStatus
    reason: RegistrationFailureReason | None
    detail: str
    query_to_ref: np.ndarray | None  # 3x3, query pixels -> reference pixels; None when failed
    inliers: int  # verified feature matches behind the homography (0 when it came from outlines)
    residual_px: float | None  # median dense-flow length left on structured pixels after warping
    agreement: float | None  # ZNCC of the shading-free structure after warping, in [-1, 1]
    overlap: float | None  # reference share covered by the warped query, or the outlines' IoU
    method: str  # "features" (SIFT/ORB homography) or "outline" (the outlines' boxes)
    refined: bool  # ECC refined the homography

    @property
    def ok(self) -> bool:
        return self.status == RegistrationStatus.OK

    def to_json(self) -> dict:
        r = lambda v, n: None if v is None else round(float(v), n)  # noqa: E731
        return {"status": self.status.value, "reason": None if self.reason is None else self.reason.value,
                "detail": self.detail, "inliers": self.inliers, "residual_px": r(self.residual_px, 3),
                "agreement": r(self.agreement, 4), "overlap": r(self.overlap, 4), "method": self.method,
                "refined": self.refined}


def _failed(reason: RegistrationFailureReason, detail: str, inliers: int = 0, method: str = "features",
            residual_px: float | None = None, agreement: float | None = None, overlap: float | None = None,
            refined: bool = False) -> RegistrationResult:
    return RegistrationResult(RegistrationStatus.FAILED, reason, detail, None, inliers, residual_px, agreement,
                              overlap, method, refined)


# Limits of a plausible view of the same thing: scale within 4x either way, axes stretched < 1.6x against
# each other, and the perspective changing the scale by < 50 % across the image.
MAX_SCALE = 4.0
MAX_STRETCH = 1.6
MAX_PERSPECTIVE = 0.5


def homography_degeneracy(H: np.ndarray, size_wh: tuple[int, int],
                          region_xywh: tuple[int, int, int, int] | None = None) -> str | None:
    """Why ``H`` (query pixels -> reference pixels, query image ``size_wh``) is no real view of the same
    thing, or None. Scale-free: the perspective terms count by how much they change the scale across the
    image, or across ``region_xywh`` (the product's box: only it is compared), so the limits hold for any
    image size."""
    if H is None or not np.all(np.isfinite(H)) or abs(H[2, 2]) < 1e-12:
        return "not a finite homography"
    H = H / H[2, 2]
    x0, y0, w, h = region_xywh if region_xywh is not None else (0, 0, *size_wh)
    # Judge the transform about the region's corner: move the origin there first.
    H = H @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    H = H / H[2, 2]
    A = H[:2, :2]
    det = float(np.linalg.det(A))
    if det <= 0:
        return "it mirrors the image (fold-over)"
    if not (1 / MAX_SCALE ** 2 < det < MAX_SCALE ** 2):
        return f"scale {np.sqrt(det):.2f}x is outside 1/{MAX_SCALE:g}..{MAX_SCALE:g}x"
    sv = np.linalg.svd(A, compute_uv=False)
    if sv[0] / max(sv[1], 1e-12) > MAX_STRETCH:
        return f"axes stretched {sv[0] / max(sv[1], 1e-12):.2f}x against each other (limit {MAX_STRETCH:g})"
    persp = abs(float(H[2, 0])) * w + abs(float(H[2, 1])) * h
    if persp > MAX_PERSPECTIVE:
        return f"perspective changes the scale by {persp:.0%} across the image (limit {MAX_PERSPECTIVE:.0%})"
    corners = np.float64([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    quad = cv2.perspectiveTransform(corners, H).reshape(-1, 2)
    if not cv2.isContourConvex(quad.astype(np.float32)):
        return "the image's corners map to a folded quadrilateral"
    return None


def _as_u8(structure: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """A structure image as 8-bit grey around 128, scaled by its spread on ``sel`` (DIS flow wants uint8;
    scaling each image by its own spread makes relighting no motion)."""
    spread = float(structure[sel].std()) if sel.any() else 1.0
    return np.clip(128.0 + structure * (40.0 / max(spread, 1e-3)), 0, 255).astype(np.uint8)


def dense_residual(query_grey: np.ndarray, ref_grey: np.ndarray, valid: np.ndarray,
                   min_pixels: int = 200) -> tuple[float | None, float | None]:
    """(median dense-flow length on the structured pixels of ``valid``, ZNCC of the structure) between a
    query already warped into the reference's frame and the reference. The flow is forward-backward checked
    and counted only where the reference has structure (on flat areas it is noise); (None, None) when
    fewer than ``min_pixels`` structured pixels exist: nothing there to be misaligned."""
    sq, sr = structure_image(query_grey), structure_image(ref_grey)
    inner = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    if inner.sum() < min_pixels:
        return None, None
    agreement = _zncc(sq, sr, inner)
    gx, gy = cv2.Sobel(sr, cv2.CV_32F, 1, 0), cv2.Sobel(sr, cv2.CV_32F, 0, 1)
    grad = np.sqrt(gx * gx + gy * gy)
    structured = inner & (grad > max(float(np.quantile(grad[inner], 0.75)), 1e-3))
    if structured.sum() < min_pixels:
        return None, agreement
    a, b = _as_u8(sr, inner), _as_u8(sq, inner)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    fwd = dis.calc(a, b, None)  # reference pixel + fwd = where it sits in the warped query
    bwd = dis.calc(b, a, None)
    hh, ww = a.shape
    xs, ys = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
    back = cv2.remap(bwd, xs + fwd[..., 0], ys + fwd[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    consistent = np.sqrt(((fwd + back) ** 2).sum(2)) < 1.0
    # Inconsistent pixels keep their forward length: a wrong fit must not hide behind occlusion-like noise,
    # but a consistent majority is the cleaner estimate when there is one.
    use = structured & consistent if (structured & consistent).sum() >= 0.5 * structured.sum() else structured
    mag = np.sqrt((fwd ** 2).sum(2))
    return float(np.median(mag[use])), agreement


def _ecc_homography(query_grey: np.ndarray, ref_grey: np.ndarray, H: np.ndarray,
                    iterations: int = 50, work_side: int = 640) -> np.ndarray | None:
    """ECC (homography motion) on shading-free structure, at most ``work_side`` px on the long side;
    None when it does not converge. ``H``: query -> reference start."""
    k = min(1.0, work_side / max(ref_grey.shape))
    S = np.diag([k, k, 1.0])
    size = (max(8, int(round(ref_grey.shape[1] * k))), max(8, int(round(ref_grey.shape[0] * k))))
    r = structure_image(cv2.resize(ref_grey, size, interpolation=cv2.INTER_AREA))
    q_w = cv2.warpPerspective(query_grey, S @ H, size, flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.full(query_grey.shape, 255, np.uint8), S @ H, size, flags=cv2.INTER_NEAREST)
    q = structure_image(q_w)
    warp = np.eye(3, dtype=np.float32)
    try:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
        _, warp = cv2.findTransformECC(r, q, warp, cv2.MOTION_HOMOGRAPHY, criteria,
                                       cv2.erode(valid, np.ones((5, 5), np.uint8)), 3)
    except cv2.error:
        return None
    # warp maps reference (scaled) pixels to warped-query (scaled) pixels: query -> ref = S^-1 warp^-1 S H
    W = warp.astype(np.float64)
    if not np.all(np.isfinite(W)) or abs(np.linalg.det(W)) < 1e-9:
        return None
    return np.linalg.inv(S) @ np.linalg.inv(W) @ S @ H


def register_images(query_bgr: np.ndarray, ref_bgr: np.ndarray, min_inliers: int = 12,
                    max_residual_px: float = 1.5, min_agreement: float = 0.5,
                    min_overlap: float = 0.5, refine: bool = True) -> RegistrationResult:
    """Feature homography (SIFT, Lowe's ratio test, RANSAC) refined by ECC on shading-free structure, then
    checked: not degenerate, covering ``min_overlap`` of the reference, and a dense flow between the warped
    query and the reference that leaves at most ``max_residual_px`` (median on structured pixels) with the
    structure agreeing (ZNCC >= ``min_agreement``). A check that fails says which and by how much.
    ECC is kept only when it lowers the residual: on flat or repetitive images it can walk off."""
    qg = cv2.cvtColor(query_bgr, cv2.COLOR_BGR2GRAY) if query_bgr.ndim == 3 else query_bgr
    rg = cv2.cvtColor(ref_bgr, cv2.COLOR_BGR2GRAY) if ref_bgr.ndim == 3 else ref_bgr
    sift = cv2.SIFT_create(nfeatures=4000)
    kq, dq = sift.detectAndCompute(qg, None)
    kr, dr = sift.detectAndCompute(rg, None)
    if dq is None or dr is None or len(kq) < min_inliers or len(kr) < min_inliers:
        return _failed(RegistrationFailureReason.TOO_FEW_INLIERS,
                       f"too few features ({0 if dq is None else len(kq)} in the view, "
                       f"{0 if dr is None else len(kr)} in the reference; {min_inliers} needed)")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dq, dr, k=2)
    # Lowe's ratio test: repetitive texture (pads, commutator bars) gives ambiguous matches otherwise.
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < min_inliers:
        return _failed(RegistrationFailureReason.TOO_FEW_INLIERS,
                       f"only {len(good)} distinctive feature matches ({min_inliers} needed)", len(good))
    src = np.float32([kq[m.queryIdx].pt for m in good])
    dst = np.float32([kr[m.trainIdx].pt for m in good])
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, 3.0, maxIters=2000, confidence=0.995)
    n_in = int(inl.sum()) if inl is not None else 0
    if H is None or n_in < min_inliers:
        return _failed(RegistrationFailureReason.TOO_FEW_INLIERS,
                       f"the homography has {n_in} inlier matches ({min_inliers} needed)", n_in)
    return verify_registration(qg, rg, H, n_in, "features", max_residual_px=max_residual_px,
                               min_agreement=min_agreement, min_overlap=min_overlap, refine=refine)


def verify_registration(query_grey: np.ndarray, ref_grey: np.ndarray, H: np.ndarray, inliers: int, method: str,
                        query_mask: np.ndarray | None = None, ref_mask: np.ndarray | None = None,
                        max_residual_px: float = 1.5, min_agreement: float = 0.5, min_overlap: float = 0.5,
                        refine: bool = False) -> RegistrationResult:
    """Check a query -> reference homography ``H``: not degenerate, enough overlap, a small dense residual.
    With masks (a product on the bench) overlap is the outlines' IoU and the residual is measured on the
    product only; without, overlap is the reference share the warped query covers. ``refine``: try ECC
    first and keep it when it lowers the residual."""
    region = cv2.boundingRect((query_mask > 0).astype(np.uint8)) if query_mask is not None else None
    why = homography_degeneracy(H, (query_grey.shape[1], query_grey.shape[0]), region)
    if why is not None:
        return _failed(RegistrationFailureReason.DEGENERATE_HOMOGRAPHY, f"degenerate homography: {why}", inliers,
                       method)
    hh, ww = ref_grey.shape
    q_valid = np.full(query_grey.shape, 255, np.uint8) if query_mask is None else query_mask

    def measure(Hc: np.ndarray) -> tuple[float, float | None, float | None, np.ndarray]:
        warped_valid = cv2.warpPerspective(q_valid, Hc, (ww, hh), flags=cv2.INTER_NEAREST) > 0
        if ref_mask is None:
            overlap = float(warped_valid.mean())
            both = warped_valid
        else:
            r = ref_mask > 0
            union = float((r | warped_valid).sum())
            overlap = float((r & warped_valid).sum()) / union if union else 0.0
            both = r & warped_valid
        warped = cv2.warpPerspective(query_grey, Hc, (ww, hh), flags=cv2.INTER_LINEAR)
        if not both.any():
            return overlap, None, None, both
        # Only the compared region: the flow over a whole frame of bench cost ~4x as much.
        x, y, bw, bh = cv2.boundingRect(both.astype(np.uint8))
        sl = np.s_[max(0, y - 16):min(hh, y + bh + 16), max(0, x - 16):min(ww, x + bw + 16)]
        res, agr = dense_residual(warped[sl], ref_grey[sl], both[sl])
        return overlap, res, agr, both

    overlap, residual, agreement, _ = measure(H)
    refined = False
    if refine:
        He = _ecc_homography(query_grey, ref_grey, H)
        if He is not None and homography_degeneracy(He, (query_grey.shape[1], query_grey.shape[0]), region) is None:
            o2, r2, a2, _ = measure(He)
            if r2 is not None and (residual is None or r2 < residual) and o2 >= min(overlap, min_overlap):
                H, overlap, residual, agreement, refined = He, o2, r2, a2, True
    if overlap < min_overlap:
        what = "outlines overlap" if ref_mask is not None else "of the reference is covered"
        return _failed(RegistrationFailureReason.OVERLAP_TOO_SMALL,
                       f"overlap too small: {overlap:.0%} {what} ({min_overlap:.0%} needed)", inliers, method,
                       residual, agreement, overlap, refined)
    if residual is not None and residual > max_residual_px:
        return _failed(RegistrationFailureReason.RESIDUAL_TOO_HIGH,
                       f"residual too high: structure still moves {residual:.1f} px after warping "
                       f"(limit {max_residual_px:g} px)", inliers, method, residual, agreement, overlap, refined)
    if agreement is not None and agreement < min_agreement:
        return _failed(RegistrationFailureReason.RESIDUAL_TOO_HIGH,
                       f"residual too high: structure agrees {agreement:.2f} after warping (ZNCC, "
                       f"{min_agreement:g} needed)", inliers, method, residual, agreement, overlap, refined)
    detail = (f"{method} homography ({inliers} inliers){', ECC refined' if refined else ''}: residual "
              f"{'n/a' if residual is None else f'{residual:.2f} px'}, overlap {overlap:.0%}")
    return RegistrationResult(RegistrationStatus.OK, None, detail, np.asarray(H, np.float64), inliers, residual,
                              agreement, overlap, method, refined)


# The first version's names, kept for callers that only need ok-or-why.
@dataclass(frozen=True, slots=True)
class Registration:
    """A verified query->reference homography for pixel-wise comparison."""

    query_to_ref: np.ndarray  # 3x3, query pixels -> reference pixels
    inliers: int
    residual: float  # median dense-flow px left after warping (0 when nothing structured to measure)


@dataclass(frozen=True, slots=True)
class RegistrationFailure:
    """Why no trustworthy registration exists; callers must not diff the images."""

    reason: str


def register(query_bgr: np.ndarray, ref_bgr: np.ndarray, min_inliers: int = 12) -> Registration | RegistrationFailure:
    """``register_images`` as ok-or-why."""
    r = register_images(query_bgr, ref_bgr, min_inliers)
    if not r.ok:
        return RegistrationFailure(r.detail)
    return Registration(r.query_to_ref, r.inliers, 0.0 if r.residual_px is None else r.residual_px)
