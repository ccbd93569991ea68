"""Reference difference: what differs between a returned view and its aligned catalogue view.

The reference is warped into the returned view's pixels (the homography from verified matches /
alignment), so the heat map is in the input image's coordinates; a smooth, short dense flow then takes up
what one homography cannot (parallax, print a few pixels off). Two cues, each in [0, 1]: structure
(1 - local SSIM of exposure-matched grey, Gaussian window), limited by colour, and colour (ΔE00 of
lightly blurred, exposure-matched Lab to the reference's Lab envelope within 2 px, 20 ΔE = 1). Where the
reference has product and the return has none, the part is missing (1). Regions above ``threshold``
become findings with boxes.
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


def heatmap_u8(heatmap: np.ndarray) -> np.ndarray:
    """The float heat map in [0, 1] as 8-bit grey (what `station compare --heatmap` writes, what the UI colours)."""
    return np.clip(heatmap * 255.0 + 0.5, 0, 255).astype(np.uint8)


_REACH = 0.03  # soft missing heat reaches full strength this far (x shorter side) into the outline
_ENV_DE_FULL = 20.0  # ΔE00 to the reference's envelope that counts as a full difference
_ENV_GAIN = 2.0  # structure difference counts only as far as colour_env x this allows


def _ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), sigma)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a * mu_a
    vb = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))


def _bench_like(image: np.ndarray, border: int = 8) -> np.ndarray:
    """Pixels that look like the bench (its border colour) or its cast shadow: about neutral relative to
    the bench, 45-112 % of its brightness. Where a reference part is absent, a missing part shows this."""
    b = border
    edge = np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3),
                           image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)])
    bench = np.maximum(np.median(edge, axis=0).astype(np.float32), 1.0)
    rel = image.astype(np.float32) / bench  # 1 on the bench, < 1 in its shadow, in every channel
    level = rel.mean(axis=2)
    spread = rel.max(axis=2) - rel.min(axis=2)
    return (level > 0.45) & (level < 1.12) & (spread < 0.12 + 0.1 * level)


def _outline_iou(q_mask: np.ndarray, ref_mask: np.ndarray, query_to_ref: np.ndarray, scale: float) -> float:
    h, w = q_mask.shape
    S = np.diag([scale, scale, 1.0])
    size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
    q = cv2.resize(q_mask, size, interpolation=cv2.INTER_NEAREST) > 0
    r = cv2.warpPerspective(ref_mask, S @ np.linalg.inv(query_to_ref), size, flags=cv2.INTER_NEAREST) > 0
    union = float((q | r).sum())
    return float((q & r).sum()) / union if union else 0.0


def _ecc_outline(q_mask: np.ndarray, ref_mask: np.ndarray, query_to_ref: np.ndarray, scale: float,
                 iterations: int, motion: int = cv2.MOTION_AFFINE) -> np.ndarray | None:
    """ECC (``motion``) between the query's outline and the reference's outline warped into the query, on
    blurred masks at ``scale``; None when it fails."""
    h, w = q_mask.shape
    S = np.diag([scale, scale, 1.0])
    size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
    ref_w = cv2.warpPerspective(ref_mask, S @ np.linalg.inv(query_to_ref), size, flags=cv2.INTER_LINEAR)
    q_s = cv2.resize(q_mask, size, interpolation=cv2.INTER_AREA)
    blur = lambda m: cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 2.0)  # noqa: E731
    warp = np.eye(3 if motion == cv2.MOTION_HOMOGRAPHY else 2, 3, dtype=np.float32)
    try:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
        _, warp = cv2.findTransformECC(blur(q_s), blur(ref_w), warp, motion, criteria, None, 1)
    except cv2.error:
        return None
    if warp.shape[0] == 2:
        warp = np.vstack([warp, [0, 0, 1]])
    W = np.linalg.inv(S) @ warp.astype(np.float64) @ S  # query pixels -> pixels of the warped reference
    if not np.all(np.isfinite(W)):
        return None
    return query_to_ref @ W


def refine_outline(q_mask: np.ndarray, ref_mask: np.ndarray, query_to_ref: np.ndarray, scale: float = 0.5,
                   iterations: int = 30, perspective: bool = True, perspective_gain: float = 0.01) -> np.ndarray:
    """Query -> reference transform whose outlines coincide best (IoU at ``scale``) among: the given one,
    the outlines' bounding boxes (``align.box_homography``), and each refined by ECC on the outlines.
    The alignment works in a 96 px frame and ORB can return a wild perspective on repetitive print, so
    outlines were often off by a few pixels (thin false "missing parts") or far off (large ones)."""
    from vision.align import box_homography

    starts = [query_to_ref, box_homography(q_mask, ref_mask)]
    candidates = list(starts)
    for H in starts:
        refined = _ecc_outline(q_mask, ref_mask, H, scale, iterations)
        if refined is not None:
            candidates.append(refined)
    scored = [(_outline_iou(q_mask, ref_mask, H, scale), i, H) for i, H in enumerate(candidates)]
    best = max(scored, key=lambda t: (t[0], -t[1]))
    if perspective:
        # A last homography step for the camera's perspective, kept only when it clearly helps (a full
        # homography could also bend the outline over a genuinely missing chunk).
        H = _ecc_outline(q_mask, ref_mask, best[2], scale, iterations, cv2.MOTION_HOMOGRAPHY)
        if H is not None:
            iou = _outline_iou(q_mask, ref_mask, H, scale)
            if iou > best[0] + perspective_gain:
                return H
    return best[2]


def reference_difference(q_img: np.ndarray, q_mask: np.ndarray, ref_img: np.ndarray, ref_mask: np.ndarray,
                         query_to_ref: np.ndarray, threshold: float = 0.5, min_area: int = 60,
                         refine: bool = True, min_depth: float = 0.03, min_missing_share: float = 0.005,
                         bench_check: bool = True, min_missing_colour: float = 0.25, shift_px: int = 2,
                         soft_missing: bool = True, flow_px: float = 16.0,
                         relative_bench: float = 2.5, decisive_colour: float = 20.0) -> DifferenceResult:
    """``refine``: refine the alignment on the outlines first. ``min_depth``: a missing part must reach this
    far into the reference outline (distance to its edge, x the outline's shorter side); thinner ones
    are alignment slivers along the edge and are reported as damage of low score, not as missing parts.
    ``flow_px``: a smooth dense flow (at most this long) aligns the reference's appearance the last pixels
    before comparing (0: off). ``shift_px``: colour differs by its distance to the reference's Lab
    envelope within this radius; structure counts only as far as that colour difference allows (0: plain
    per-pixel ΔE and SSIM). ``soft_missing``: reference product the return lacks shows in the map by its
    colour difference (deeper = stronger) even where the filters below keep it from being a missing part.
    ``relative_bench``/``decisive_colour``: a candidate missing part whose pixels are less than
    ``decisive_colour`` ΔE00 from the reference part and not clearly the bench around it (ΔE to the part
    < relative_bench x ΔE to that bench) is a pale part the segmentation dropped, not missing (0: off)."""
    h, w = q_mask.shape
    if refine:
        query_to_ref = refine_outline(q_mask, ref_mask, query_to_ref)
    Hinv = np.linalg.inv(query_to_ref)
    ref_w = cv2.warpPerspective(ref_img, Hinv, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    ref_m = cv2.warpPerspective(ref_mask, Hinv, (w, h), flags=cv2.INTER_NEAREST)
    both = (q_mask > 0) & (ref_m > 0)
    heat = np.zeros((h, w), np.float32)
    if both.sum() < 100:
        return DifferenceResult(heat, ())
    # Work on the product's bounding box only: most of a frame is bench.
    x, y, bw, bh = cv2.boundingRect(((q_mask > 0) | (ref_m > 0)).astype(np.uint8))
    # A margin, so the morphology below sees bench around the outline (at the crop's edge an opening
    # keeps any sliver: erosion treats outside the image as foreground).
    x0, y0 = max(0, x - 8), max(0, y - 8)
    sl = np.s_[y0:min(h, y + bh + 8), x0:min(w, x + bw + 8)]
    q = cv2.GaussianBlur(q_img[sl], (0, 0), 1.2).astype(np.float32)
    r = cv2.GaussianBlur(ref_w[sl], (0, 0), 1.2).astype(np.float32)
    inner = cv2.erode(both[sl].astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    sel = inner if inner.sum() > 50 else both[sl]
    # One exposure gain (median ratio of grey) so shading and exposure are not differences.
    qg, rg = q.mean(axis=2), r.mean(axis=2)
    gain = float(np.median(rg[sel]) / max(np.median(qg[sel]), 1.0))
    q = np.clip(q * gain, 0, 255)
    qg = qg * gain
    q_lab = bgr_to_lab_d50(q.astype(np.uint8))
    # Plain per-pixel ΔE00 to the (unflowed) reference: what shows where the return lacks reference product
    # (missing parts are judged on it); everywhere only when it is also the appearance cue (shift_px 0).
    lacking = (ref_m[sl] > 0) & (q_mask[sl] == 0)
    de = np.zeros(qg.shape, np.float64)
    if shift_px > 0:
        de[lacking] = delta_e_ciede2000(q_lab[lacking], bgr_to_lab_d50(r[lacking].astype(np.uint8)))
    else:
        de = delta_e_ciede2000(q_lab, bgr_to_lab_d50(r.astype(np.uint8)))
    colour = np.clip(de / 20.0, 0, 1).astype(np.float32)
    if flow_px > 0:
        # What one homography cannot align (a box's top face seen from another height, print a few pixels
        # off): a smooth dense flow, at most flow_px long, moves the reference onto the return before the
        # appearance is compared. Smooth (sigma 6) and short, it cannot turn one colour into another, so a
        # mark or a stain still differs.
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        flow = dis.calc(np.clip(qg, 0, 255).astype(np.uint8), np.clip(rg, 0, 255).astype(np.uint8), None)
        flow = cv2.GaussianBlur(flow, (0, 0), 6.0)
        mag = np.sqrt((flow ** 2).sum(axis=2, keepdims=True))
        flow *= np.minimum(1.0, flow_px / np.maximum(mag, 1e-6))
        hh, ww = qg.shape
        gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
        r = cv2.remap(r, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rg = r.mean(axis=2)
    struct = np.clip((1.0 - _ssim_map(qg, rg)) / 1.2, 0, 1)
    if shift_px > 0:
        # Tolerance to the alignment's last pixels: a returned pixel differs only by its distance to the
        # envelope (per-channel min..max) of the reference's Lab within shift_px. Print edges, lines and
        # texture a pixel or two off are then no difference; a mark whose colour the reference has
        # nowhere near still is.
        k = np.ones((2 * shift_px + 1, 2 * shift_px + 1), np.uint8)
        r32 = bgr_to_lab_d50(r.astype(np.uint8)).astype(np.float32)
        nearest = np.clip(q_lab, cv2.erode(r32, k), cv2.dilate(r32, k))
        colour_env = np.clip(delta_e_ciede2000(q_lab, nearest) / _ENV_DE_FULL, 0, 1).astype(np.float32)
        struct = np.minimum(struct, np.clip(colour_env * _ENV_GAIN, 0, 1))
    else:
        colour_env = colour
    local = np.maximum(struct, colour_env)
    # Misalignment leaves thin slivers along edges: a small opening keeps only blobs.
    local = cv2.morphologyEx(local, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    local = np.where(inner, local, local * 0.5)
    region = np.zeros_like(heat[sl])
    region[both[sl]] = local[both[sl]]
    missing = (ref_m[sl] > 0) & ~(cv2.dilate(q_mask[sl], np.ones((9, 9), np.uint8)) > 0)
    missing = cv2.morphologyEx(missing.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8)) > 0
    if soft_missing and lacking.any():
        # Reference product the return lacks, before the filters below decide what is a missing *part*: the
        # map shows it by how much what is there differs from the reference, scaled by how deep it reaches
        # into the outline (edge slivers stay faint).
        depth0 = cv2.distanceTransform((ref_m[sl] > 0).astype(np.uint8), cv2.DIST_L2, 5)
        rx0, ry0, rw0, rh0 = cv2.boundingRect((ref_m > 0).astype(np.uint8))
        reach = np.clip(depth0 / max(1.0, _REACH * min(rw0, rh0)), 0, 1)
        region[lacking] = np.maximum(region[lacking], (colour * reach)[lacking])
    if min_depth > 0 and missing.any():
        # Depth of each missing blob: how far it reaches into the reference outline.
        depth = cv2.distanceTransform((ref_m[sl] > 0).astype(np.uint8), cv2.DIST_L2, 5)
        rx, ry, rw, rh = cv2.boundingRect((ref_m > 0).astype(np.uint8))
        need = min_depth * min(rw, rh)
        n_m, lab_m = cv2.connectedComponents(missing.astype(np.uint8))
        bench_like = _bench_like(q_img)[sl] if bench_check else None
        for i in range(1, n_m):
            blob = lab_m == i
            if depth[blob].max() < need:
                missing[blob] = False
            elif bench_like is not None and bench_like[blob].mean() < 0.5:
                # What shows there is not the bench: the part is there and only its segmentation dropped it
                # (a foot apart from the body): not missing.
                missing[blob] = False
            elif bench_check and float(np.median(colour[blob])) < min_missing_colour:
                # What shows there has the reference's colour (a seal strip as pale as the bench, shaded
                # into the bench's grey): the part is there, not missing.
                missing[blob] = False
            elif bench_check and relative_bench > 0:
                # What shows there is not clearly the bench right around it (within relative_bench x its
                # distance to the reference part, and less than decisive_colour ΔE00 from that part): a pale
                # part the segmentation dropped (seal strip, a carton's pale top face, a bottle's neck),
                # present. A part that was there would differ from the bench beside it, a missing one not.
                ring = ((cv2.dilate(blob.astype(np.uint8), np.ones((21, 21), np.uint8)) > 0) & (ref_m[sl] == 0)
                        & ~(cv2.dilate(q_mask[sl], np.ones((5, 5), np.uint8)) > 0))
                if ring.sum() >= 20:
                    local_bench = np.median(q_lab[ring], axis=0)
                    to_bench = float(np.median(delta_e_ciede2000(q_lab[blob], local_bench)))
                    to_ref = float(np.median(de[blob]))
                    if to_ref < decisive_colour and to_ref < relative_bench * to_bench:
                        missing[blob] = False
    region[missing] = 1.0
    heat[sl] = region
    heat = cv2.GaussianBlur(heat, (0, 0), 2.0)
    area = max(1.0, float((ref_m > 0).sum()))
    regions = []
    miss_full = np.zeros((h, w), bool)
    miss_full[sl] = missing
    # Missing parts come from the outline comparison itself, so a missing chunk that touches a differing
    # area (the heat map joins them into one blob) is still reported as missing. One smaller than
    # min_missing_share of the outline is within what alignment leaves at the edge: not a finding.
    n_m, lab_m, st_m, _ = cv2.connectedComponentsWithStats(miss_full.astype(np.uint8))
    for i in range(1, n_m):
        x0, y0, ww, hh, a = st_m[i]
        if a < min_area or a / area < min_missing_share:
            continue
        blob = lab_m == i
        regions.append(DifferenceRegion((float(x0), float(y0), float(x0 + ww), float(y0 + hh)),
                                        float(heat[blob].mean()), "missing_part", a / area))
    n, labels, stats, _ = cv2.connectedComponentsWithStats((heat > threshold).astype(np.uint8))
    for i in range(1, n):
        x0, y0, ww, hh, a = stats[i]
        if a < min_area:
            continue
        blob = labels == i
        if miss_full[blob].mean() > 0.5:
            continue  # a missing part (above), or an edge sliver too small to be one
        regions.append(DifferenceRegion((float(x0), float(y0), float(x0 + ww), float(y0 + hh)),
                                        float(heat[blob].mean()), "damage", a / area))
    regions.sort(key=lambda r: -r.score)
    return DifferenceResult(heat, tuple(regions))
