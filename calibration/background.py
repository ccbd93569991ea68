"""Empty-bench background plates: what a fixed station sees with nothing on the bench, per view, captured at
calibration (`station calibrate background`), and the product outline as what differs from it.

A plate is the per-pixel median of N empty-bench frames and the per-pixel spread of those frames around it
(CIELAB ΔE: sensor noise, JPEG, lamp flicker, texture edges that shimmer). A frame's pixel is product where
it differs from the plate by more than a threshold made of a floor and a multiple of that pixel's spread,
except where it is the plate's colour made darker (the item's cast shadow). The outline method that takes
the image border as the bench needs a plain bench; this one does not, so a wood grain or printed bench works.

Where the plate cannot be trusted the caller falls back to the border method and says why: no plate for
the view, another frame size, lighting that drifted since the plate was captured (the bench's brightness
or colour at the frame's rim differs from the plate's), or a "product" covering most of the frame.

Stored as ``<data_dir>/calibration/background_<camera_id>.json`` (calibration.profiles) listing, per view,
two PNGs beside it: the median (8-bit BGR) and the spread (16-bit, ΔE x 100), with their SHA-256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from calibration.profiles import load_profile, profile_path, save_profile, write_private

PLATE_KIND = "background"
MIN_FRAMES = 3
# Threshold per pixel: floor + SPREAD_K x that pixel's spread (ΔE, OpenCV's CIELAB of 8-bit sRGB).
FLOOR_DELTA_E = 5.0
SPREAD_K = 3.0
# The frame's rim (outer RIM_SHARE of each side) is bench in most frames: its median tells lighting drift.
RIM_SHARE = 0.06
MAX_GAIN_DRIFT = 0.15  # the rim brighter/darker than the plate by more than this (any channel): drifted
MAX_RIM_DELTA_E = 8.0  # after that gain, the rim's median ΔE to the plate above this: not this bench/camera
# More of the rim than this unlike the plate: the camera moved (a product reaching the edge covers less of it).
MAX_RIM_MISMATCH = 0.35
MAX_FOREGROUND_SHARE = 0.85  # a "product" covering more than this is not a product (as vision.compare says)
# A cast shadow is the bench's colour, darker: lightness scaled by c (L*+16 and a*, b* scale alike).
SHADOW_SCALE = (0.70, 0.985)
SHADOW_CHROMA_DELTA_E = 6.0
# While capturing, a pixel differing from the median by more than this in one frame was not still bench.
UNSTILL_DELTA_E = 25.0
MAX_UNSTILL_SHARE = 0.01
_VIEW = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class PlateError(ValueError):
    """The frames cannot make a plate, or a stored plate cannot be read; the message says what to do."""


def bgr_to_lab(image: np.ndarray) -> np.ndarray:
    """OpenCV's CIELAB (D65) of 8-bit sRGB BGR as float32: L 0..100, a and b about -110..110."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


def _smooth_lab(image: np.ndarray) -> np.ndarray:
    """CIELAB of a lightly blurred copy: sensor noise and JPEG blocks averaged out before differencing."""
    return bgr_to_lab(cv2.GaussianBlur(image, (5, 5), 1.2))


def _delta_e(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    return np.sqrt(((lab1 - lab2) ** 2).sum(axis=-1))


@dataclass(frozen=True, slots=True)
class BackgroundPlate:
    view: str
    median_bgr: np.ndarray  # (H, W, 3) uint8
    spread: np.ndarray  # (H, W) float32, ΔE
    frames: int

    @property
    def size(self) -> tuple[int, int]:
        return int(self.median_bgr.shape[1]), int(self.median_bgr.shape[0])

    def summary(self) -> dict:
        return {"view": self.view, "frames": self.frames, "size": list(self.size),
                "spread_median_delta_e": round(float(np.median(self.spread)), 3),
                "spread_p95_delta_e": round(float(np.percentile(self.spread, 95)), 3)}


def plate_from_frames(frames: Sequence[np.ndarray], view: str) -> BackgroundPlate:
    """The plate of one view from N >= 3 empty-bench frames of one size. Refused (PlateError) when something
    moved on the bench while they were taken: a pixel that is far from the median in some frame."""
    if not _VIEW.fullmatch(view or ""):
        raise PlateError(f"view {view!r} cannot name a plate: use 1 to 64 letters, digits, '_', '.' or '-'")
    if len(frames) < MIN_FRAMES:
        raise PlateError(f"a background plate needs at least {MIN_FRAMES} frames of the empty bench, got {len(frames)}")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise PlateError(f"the frames of view {view} differ in size ({sorted(str(s) for s in shapes)}): "
                         "keep the camera's resolution fixed while capturing")
    stack = np.stack(frames)
    median = np.median(stack, axis=0).round().astype(np.uint8)
    ref = _smooth_lab(median)
    dist = np.stack([_delta_e(_smooth_lab(f), ref) for f in frames])
    unstill = float((dist.max(axis=0) > UNSTILL_DELTA_E).mean())
    if unstill > MAX_UNSTILL_SHARE:
        raise PlateError(f"the bench changed while the plate of view {view} was captured ({unstill:.1%} of the "
                         "frame moved): clear the bench, keep hands and items out of view, and retake")
    # RMS over frames, then the local maximum: a texture edge shimmers by a pixel between frames.
    spread = np.sqrt((dist ** 2).mean(axis=0)).astype(np.float32)
    spread = cv2.dilate(spread, np.ones((3, 3), np.uint8))
    return BackgroundPlate(view, median, spread, len(frames))


@dataclass(frozen=True, slots=True)
class PlateSegmentation:
    """The outline from the plate (``mask`` None when the plate could not be used: ``reason`` says why)."""

    mask: np.ndarray | None
    bench_bgr: np.ndarray | None  # the frame's median BGR over its bench pixels
    balanced: np.ndarray | None  # the frame, balanced (see segment_with_plate)
    reason: str | None
    view: str


def _rim(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    bh, bw = max(2, int(RIM_SHARE * h)), max(2, int(RIM_SHARE * w))
    return np.concatenate([image[:bh].reshape(-1, *image.shape[2:]), image[-bh:].reshape(-1, *image.shape[2:]),
                           image[bh:-bh, :bw].reshape(-1, *image.shape[2:]),
                           image[bh:-bh, -bw:].reshape(-1, *image.shape[2:])])


def _fallback(plate: BackgroundPlate, reason: str) -> PlateSegmentation:
    return PlateSegmentation(None, None, None, reason, plate.view)


def segment_with_plate(image: np.ndarray, plate: BackgroundPlate, bench_grey: float = 200.0) -> PlateSegmentation:
    """Product outline (holes filled) as what differs from the plate. ``balanced``: a plate of a neutral
    bench white-balances the frame on its bench pixels to ``bench_grey`` (as the border method does); a
    coloured bench (wood) only has the lighting drift since the plate taken out, per channel."""
    if image.ndim != 3 or image.shape != plate.median_bgr.shape:
        h, w = image.shape[:2]
        return _fallback(plate, f"the plate of view {plate.view} is {plate.size[0]}x{plate.size[1]}, the frame "
                                f"{w}x{h}: recapture the plate (`station calibrate background`)")
    rim_f = np.median(_rim(image).astype(np.float32), axis=0)
    rim_p = np.median(_rim(plate.median_bgr).astype(np.float32), axis=0)
    gain = np.maximum(rim_f, 1.0) / np.maximum(rim_p, 1.0)
    if float(np.abs(gain - 1.0).max()) > MAX_GAIN_DRIFT:
        return _fallback(plate, f"lighting drifted since the plate of view {plate.view} was captured (bench "
                                f"B/G/R x{gain[0]:.2f}/{gain[1]:.2f}/{gain[2]:.2f}): recapture the plate")
    shift = _camera_shift(image, plate.median_bgr)
    if shift is not None:
        return _fallback(plate, f"the camera moved by ({shift[0]:+.0f}, {shift[1]:+.0f}) px since the plate of view "
                                f"{plate.view} was captured: fix the camera and recapture the plate")
    # Compare with the plate as lit now: small lamp drift is taken out before differencing.
    lit = np.clip(plate.median_bgr.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    lab_f, lab_p = _smooth_lab(image), _smooth_lab(lit)
    dist = _delta_e(lab_f, lab_p)
    threshold = FLOOR_DELTA_E + SPREAD_K * plate.spread
    rim_de = float(np.median(_rim(dist)))
    rim_off = float((_rim(dist) > _rim(threshold)).mean())
    if rim_de > MAX_RIM_DELTA_E or rim_off > MAX_RIM_MISMATCH:
        return _fallback(plate, f"the bench at the frame's edge differs from the plate of view {plate.view} "
                                f"({rim_off:.0%} of it, median ΔE {rim_de:.1f}): the camera moved or the bench "
                                "changed; recapture the plate")
    scale = (lab_f[..., 0] + 16.0) / np.maximum(lab_p[..., 0] + 16.0, 1.0)
    chroma_off = np.hypot(lab_f[..., 1] - scale * lab_p[..., 1], lab_f[..., 2] - scale * lab_p[..., 2])
    shadow = (scale >= SHADOW_SCALE[0]) & (scale <= SHADOW_SCALE[1]) & (chroma_off < SHADOW_CHROMA_DELTA_E)
    raw = ((dist > threshold) & ~shadow).astype(np.uint8) * 255
    mask = _outline(raw)
    share = cv2.countNonZero(mask) / mask.size
    if share > MAX_FOREGROUND_SHARE:
        return _fallback(plate, f"{share:.0%} of the frame differs from the plate of view {plate.view}: the "
                                "lighting or the bench changed; recapture the plate")
    bench_px = image[mask == 0]
    bench = np.median(bench_px, axis=0) if len(bench_px) else rim_f
    lab_plate = bgr_to_lab(plate.median_bgr.reshape(1, -1, 3)).reshape(-1, 3)
    neutral = bool(np.all(np.abs(np.median(lab_plate[:, 1:], axis=0)) < 6.0)) and \
        float(np.median(plate.spread)) < 3.0 and float(lab_plate[:, 0].std()) < 6.0
    if neutral:
        gains = bench_grey / np.maximum(bench.astype(np.float64), 1.0)
    else:
        gains = 1.0 / gain
    balanced = cv2.merge([cv2.convertScaleAbs(ch, alpha=float(g)) for ch, g in zip(cv2.split(image), gains)])
    return PlateSegmentation(mask, np.asarray(bench, np.float64), balanced, None, plate.view)


MAX_SHIFT_PX = 2.5


def _camera_shift(image: np.ndarray, plate_bgr: np.ndarray) -> tuple[float, float] | None:
    """The frame's translation against the plate (phase correlation of the grey images, which a product on
    part of the bench does not move) when it exceeds MAX_SHIFT_PX, else None."""
    a = cv2.cvtColor(plate_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    b = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    if response > 0.05 and np.hypot(dx, dy) > MAX_SHIFT_PX:
        return float(dx), float(dy)
    return None


def _outline(raw: np.ndarray) -> np.ndarray:
    """Speckle out, gaps closed, the largest part and sizeable parts near it, holes filled."""
    mask = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    if not contours:
        return filled
    largest = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(largest)
    x, y, w, h = cv2.boundingRect(largest)
    gap = 0.06 * max(w, h)
    parts = [largest]
    for c in contours:
        if c is largest or cv2.contourArea(c) < 0.03 * area:
            continue
        cx, cy, cw, ch = cv2.boundingRect(c)
        if max(x - (cx + cw), cx - (x + w), y - (cy + ch), cy - (y + h), 0) <= gap:
            parts.append(c)
    cv2.drawContours(filled, parts, -1, 255, -1)
    return filled


# ------------------------------------------------------------------------------------------- storage


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise PlateError(f"cannot encode {path.name}")
    write_private(path, buf.tobytes())


def save_plates(data_dir: Path, camera_id: str, plates: Sequence[BackgroundPlate]) -> Path:
    """Write each plate's PNGs, then the profile naming them (the profile last: a reader never sees a
    profile whose images are not there yet)."""
    folder = profile_path(data_dir, PLATE_KIND, camera_id).parent
    folder.mkdir(parents=True, exist_ok=True)
    views = {}
    for p in plates:
        stem = f"{PLATE_KIND}_{camera_id}_{p.view}"
        median, spread = folder / f"{stem}_median.png", folder / f"{stem}_spread.png"
        _write_png(median, p.median_bgr)
        _write_png(spread, np.clip(p.spread * 100.0 + 0.5, 0, 65535).astype(np.uint16))
        views[p.view] = {**p.summary(), "median_png": median.name, "median_sha256": _sha256(median),
                         "spread_png": spread.name, "spread_sha256": _sha256(spread)}
    return save_profile(data_dir, PLATE_KIND, camera_id, {"views": views})


def load_plates(data_dir: Path, camera_id: str) -> dict[str, BackgroundPlate]:
    """The camera's plates by view ({} when there is no background profile). A profile whose images are
    missing, altered or unreadable raises PlateError (the caller decides: the station falls back)."""
    prof = load_profile(data_dir, PLATE_KIND, camera_id)
    if prof is None:
        return {}
    folder = profile_path(data_dir, PLATE_KIND, camera_id).parent
    plates = {}
    try:
        for view, entry in prof["data"]["views"].items():
            median_p, spread_p = folder / entry["median_png"], folder / entry["spread_png"]
            if any(Path(entry[k]).name != entry[k] for k in ("median_png", "spread_png")):
                raise PlateError(f"background profile of camera {camera_id} names files outside its folder")
            for path, digest in ((median_p, entry["median_sha256"]), (spread_p, entry["spread_sha256"])):
                if not path.is_file() or _sha256(path) != digest:
                    raise PlateError(f"background plate {path.name} is missing or altered: run "
                                     "`station calibrate background` again")
            median = cv2.imread(str(median_p), cv2.IMREAD_COLOR)
            spread = cv2.imread(str(spread_p), cv2.IMREAD_UNCHANGED)
            if median is None or spread is None or spread.shape != median.shape[:2]:
                raise PlateError(f"background plate of view {view} is unreadable: recapture it")
            plates[view] = BackgroundPlate(view, median, spread.astype(np.float32) / 100.0, int(entry["frames"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise PlateError(f"background profile of camera {camera_id} is malformed ({exc}): recapture it") from exc
    return plates


@dataclass(frozen=True, slots=True)
class BackgroundPlates:
    """A camera's plates by view; what the comparer segments with."""

    plates: dict

    def segment(self, image: np.ndarray, view: str, bench_grey: float = 200.0) -> PlateSegmentation | None:
        """The plate segmentation of ``image`` taken as ``view``; None when there is no plate at all. A view
        without a plate of its own (a one-off `station compare`) uses the plate of this frame size whose rim
        matches the frame best."""
        if not self.plates:
            return None
        plate = self.plates.get(view)
        if plate is not None:
            return segment_with_plate(image, plate, bench_grey)
        same = [p for p in self.plates.values() if p.median_bgr.shape == image.shape]
        if not same:
            return PlateSegmentation(None, None, None, f"no background plate for view {view!r} at "
                                     f"{image.shape[1]}x{image.shape[0]} (plates: {', '.join(sorted(self.plates))})",
                                     view)
        rim = _rim(image).astype(np.float32)
        best = min(same, key=lambda p: float(np.median(np.abs(_rim(p.median_bgr).astype(np.float32) - rim))))
        return segment_with_plate(image, best, bench_grey)


def load_background(data_dir: Path, camera_id: str) -> tuple[BackgroundPlates | None, str | None]:
    """(the camera's plates or None, why a stored background profile is not usable or None). Never raises:
    a station without a usable plate segments by the border, and says so."""
    from calibration.profiles import ProfileError

    try:
        plates = load_plates(data_dir, camera_id)
    except (PlateError, ProfileError, OSError, ValueError) as exc:
        return None, str(exc)
    return (BackgroundPlates(plates) if plates else None), None
