"""Alignment of a returned view to a catalogue view, and dense verification in the aligned frame.

Both images are mapped into a small canonical frame around the reference product (``size`` pixels on
its longer side). The initial query->reference transform comes from verified ORB matches when there are
enough, else from the product outlines' bounding boxes; ECC (``cv2.findTransformECC``) then refines it
on shading-free structure images. In the aligned frame three things are measured: structure agreement
(zero-mean normalised cross-correlation of high-passed grey), colour agreement (median ΔE00 after one
exposure gain) and outline overlap (IoU of the product masks).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Registration:
    """A verified query->reference homography for pixel-wise comparison."""

    query_to_ref: np.ndarray  # 3x3, query pixels -> reference pixels
    inliers: int  # RANSAC inliers of the feature homography
    residual: float  # 1 - ZNCC of structure images after warping; small means aligned


@dataclass(frozen=True, slots=True)
class RegistrationFailure:
    """Why no trustworthy registration exists; callers must not diff the images."""

    reason: str


def register(query_bgr: np.ndarray, ref_bgr: np.ndarray, min_inliers: int = 12,
             max_residual: float = 0.5) -> Registration | RegistrationFailure:
    """SIFT + RANSAC homography refined by ECC; the residual check rejects a wrong fit."""
    qg = cv2.cvtColor(query_bgr, cv2.COLOR_BGR2GRAY)
    rg = cv2.cvtColor(ref_bgr, cv2.COLOR_BGR2GRAY)
    sift = cv2.SIFT_create()
    kq, dq = sift.detectAndCompute(qg, None)
    kr, dr = sift.detectAndCompute(rg, None)
    if dq is None or dr is None or len(kq) < min_inliers or len(kr) < min_inliers:
        return RegistrationFailure("too few features")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dq, dr, k=2)
    # Lowe's ratio test: repetitive texture (PCB pads) yields ambiguous matches otherwise.
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < min_inliers:
        return RegistrationFailure(f"only {len(good)} distinctive matches")
    src = np.float32([kq[m.queryIdx].pt for m in good])
    dst = np.float32([kr[m.trainIdx].pt for m in good])
    h, inl = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    n_in = int(inl.sum()) if inl is not None else 0
    if h is None or n_in < min_inliers:
        return RegistrationFailure(f"homography has {n_in} inliers")
    sq, sr = structure_image(qg), structure_image(rg)
    warp = h.astype(np.float32)
    try:
        _, warp = cv2.findTransformECC(sr, sq, np.linalg.inv(warp).astype(np.float32), cv2.MOTION_HOMOGRAPHY,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5), None, 5)
        warp = np.linalg.inv(warp)
    except cv2.error:
        warp = h  # ECC can diverge on flat images; the residual check below still guards the result.
    hh, ww = rg.shape
    warped = cv2.warpPerspective(sq, warp, (ww, hh))
    valid = cv2.warpPerspective(np.ones_like(qg), warp, (ww, hh)) > 0
    if valid.mean() < 0.5:
        return RegistrationFailure("overlap below half the reference")
    residual = 1.0 - _zncc(warped, sr, valid)
    if residual > max_residual:
        return RegistrationFailure(f"residual {residual:.2f} above {max_residual}")
    return Registration(np.asarray(warp, np.float64), n_in, float(residual))
