"""Camera intrinsics from checkerboard views (``cv2.findChessboardCorners`` + ``cornerSubPix`` +
``cv2.calibrateCamera``), and undistortion with a stored intrinsics profile.

The board is given by its inner corners (cols x rows, e.g. 9x6) and square size in mm. The result holds
the camera matrix, the distortion (k1, k2, p1, p2, k3), the RMS reprojection error over all corners and
each view's RMS error (a view with a much larger error than the rest is a blurred or moved board).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class CalibrationError(ValueError):
    """The calibration could not be done; the message says what to fix."""


def parse_board(text: str) -> tuple[int, int]:
    """'9x6' -> (9, 6) inner corners (cols, rows); ValueError with a clear message otherwise."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"board {text!r} must be COLSxROWS inner corners, e.g. 9x6") from None
    if cols < 3 or rows < 3:
        raise ValueError(f"board {text!r}: need at least 3x3 inner corners")
    return cols, rows


def board_points(board: tuple[int, int], square_mm: float) -> np.ndarray:
    """Inner corners in board coordinates (mm, z = 0), row-major as the detector returns them."""
    cols, rows = board
    grid = np.zeros((rows * cols, 3), np.float32)
    grid[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_mm
    return grid


def find_corners(image: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners (N, 1, 2) float32, or None when the whole board is not found."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(grey, board, flags)
    if not found:
        found, corners = cv2.findChessboardCorners(grey, board, flags | cv2.CALIB_CB_FILTER_QUADS)
    if not found or corners is None:
        return None
    # Search window: a third of the smallest corner spacing, between 3 and 11 px.
    pts = corners.reshape(board[1], board[0], 2)
    spacing = min(np.linalg.norm(np.diff(pts, axis=1), axis=2).min(), np.linalg.norm(np.diff(pts, axis=0), axis=2).min())
    win = int(np.clip(spacing / 3, 3, 11))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 60, 1e-4)
    return cv2.cornerSubPix(grey, corners, (win, win), (-1, -1), criteria)


@dataclass(frozen=True, slots=True)
class Intrinsics:
    camera_matrix: np.ndarray  # 3x3
    dist_coeffs: np.ndarray  # (5,) k1, k2, p1, p2, k3
    image_size: tuple[int, int]  # width, height

    def to_json(self) -> dict:
        return {"camera_matrix": np.round(self.camera_matrix, 6).tolist(),
                "dist_coeffs": np.round(self.dist_coeffs.ravel(), 8).tolist(), "image_size": list(self.image_size)}

    @staticmethod
    def from_json(data: dict) -> "Intrinsics":
        return Intrinsics(np.array(data["camera_matrix"], np.float64), np.array(data["dist_coeffs"], np.float64),
                          (int(data["image_size"][0]), int(data["image_size"][1])))

    def _matrix_for(self, w: int, h: int) -> np.ndarray:
        K = self.camera_matrix
        if (w, h) != self.image_size:  # same sensor, other resolution: scale the camera matrix
            K = np.diag([w / self.image_size[0], h / self.image_size[1], 1.0]) @ K
        return K

    def undistort_points(self, points: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Pixel points (N, 2) of a frame -> where a distortion-free camera with the same camera matrix
        sees them (N, 2). Exact to 1e-8 px; no resampling, so edges keep their sharpness."""
        K = self._matrix_for(*(image_size or self.image_size))
        pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
        return cv2.undistortPoints(pts, K, self.dist_coeffs, None, None, K, criteria).reshape(-1, 2)

    def undistort(self, image: np.ndarray) -> np.ndarray:
        """The image as a distortion-free camera with the same camera matrix would have taken it."""
        h, w = image.shape[:2]
        K = self._matrix_for(w, h)
        return cv2.undistort(image, K, self.dist_coeffs)


@dataclass(frozen=True, slots=True)
class IntrinsicsResult:
    intrinsics: Intrinsics
    rms_px: float
    per_image: tuple[tuple[str, float | None], ...]  # (name, RMS px) per input; None: board not found
    board: tuple[int, int]
    square_mm: float
    coverage: float = 1.0  # how far the corners reach towards the image corners, 0 (centre) .. 1 (corner)
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        K = self.intrinsics.camera_matrix
        return {
            **self.intrinsics.to_json(),
            "fx": round(float(K[0, 0]), 4), "fy": round(float(K[1, 1]), 4),
            "cx": round(float(K[0, 2]), 4), "cy": round(float(K[1, 2]), 4),
            "rms_reprojection_px": round(self.rms_px, 5),
            "per_image": [{"image": n, "found": e is not None, "rms_px": None if e is None else round(e, 5)}
                          for n, e in self.per_image],
            "views_used": sum(e is not None for _, e in self.per_image),
            "board": f"{self.board[0]}x{self.board[1]}", "square_mm": self.square_mm,
            "coverage": round(self.coverage, 3), "warnings": list(self.warnings),
        }


def calibrate_intrinsics(images: list[tuple[str, np.ndarray]], board: tuple[int, int] = (9, 6),
                         square_mm: float = 25.0, min_views: int = 3) -> IntrinsicsResult:
    """Calibrate from named views of the board. Raises CalibrationError when fewer than ``min_views``
    show the whole board or the views differ in size."""
    obj = board_points(board, square_mm)
    obj_pts, img_pts, names, found = [], [], [], []
    size = None
    for name, img in images:
        h, w = img.shape[:2]
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise CalibrationError(f"{name} is {w}x{h} but the first image is {size[0]}x{size[1]}: "
                                   "calibrate one camera resolution at a time")
        corners = find_corners(img, board)
        found.append(corners is not None)
        names.append(name)
        if corners is not None:
            obj_pts.append(obj)
            img_pts.append(corners)
    if len(obj_pts) < min_views:
        missing = [n for n, f in zip(names, found) if not f]
        raise CalibrationError(
            f"the {board[0]}x{board[1]} checkerboard was found in {len(obj_pts)} of {len(names)} images; need "
            f"at least {min_views} (not found in: {', '.join(missing) or '-'}). Check --board (inner corners, "
            "cols x rows), focus and that the whole board is in view")
    # High-order radial terms are only observable from corners far from the centre; fitted from central
    # views alone they soak up noise (k2 = 11, k3 = -233 seen from four central views). Fix them then.
    coverage = corner_coverage(img_pts, size)
    flags, warnings = 0, []
    if coverage < MIN_K2_COVERAGE:
        flags, fixed = cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3, "k2 and k3 were"
    elif coverage < MIN_K3_COVERAGE:
        flags, fixed = cv2.CALIB_FIX_K3, "k3 was"
    if flags:
        warnings.append(f"the board's corners reach only {coverage:.0%} of the way to the image corners: {fixed} "
                        "fixed at 0 and distortion near the edges is extrapolated; add views with the board "
                        "near each image corner")
    rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj_pts, img_pts, size, None, None, flags=flags)
    errors = []
    for o, p, r, t in zip(obj_pts, img_pts, rvecs, tvecs):
        proj, _ = cv2.projectPoints(o, r, t, K, dist)
        errors.append(float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - p.reshape(-1, 2)) ** 2, axis=1)))))
    it = iter(errors)
    per_image = tuple((n, next(it) if f else None) for n, f in zip(names, found))
    dist5 = np.zeros(5)
    d = np.asarray(dist, np.float64).ravel()
    dist5[:min(5, d.size)] = d[:5]
    return IntrinsicsResult(Intrinsics(np.asarray(K, np.float64), dist5, size), float(rms), per_image, board,
                            float(square_mm), coverage, tuple(warnings))


MIN_K3_COVERAGE = 0.45  # below: k3 fixed at 0
MIN_K2_COVERAGE = 0.3  # below: k2 fixed too


def corner_coverage(img_pts: list[np.ndarray], size: tuple[int, int]) -> float:
    """The farthest detected corner's distance from the image centre, over the half diagonal (0..1)."""
    w, h = size
    pts = np.concatenate([p.reshape(-1, 2) for p in img_pts])
    r = np.hypot(pts[:, 0] - (w - 1) / 2, pts[:, 1] - (h - 1) / 2)
    return float(r.max() / np.hypot(w / 2, h / 2))
