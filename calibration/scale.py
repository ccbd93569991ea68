"""Scale on the bench plane: millimetres per pixel from ArUco markers of known size or a checkerboard of
known square size lying on the bench, with the detected corners undistorted when intrinsics are known (no resampling of the frame).

For each reference (a marker, or the whole board) a homography image -> plane (mm) is fitted to its
corners; the local scale is sqrt(|det J|) of that map at the reference's centre (area-preserving, so
a slight tilt of the camera does not bias one axis). With several markers the median is the scale;
their spread and the x/y anisotropy are reported, and a camera visibly not square to the bench warns.
The scale holds on the bench plane: an item's top face is nearer the camera and looks larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.intrinsics import CalibrationError, Intrinsics, board_points, find_corners
from calibration.scenes import aruco_dictionary_id


@dataclass(frozen=True, slots=True)
class ScaleResult:
    mm_per_px: float
    method: str  # "aruco" or "checkerboard"
    references: tuple[dict, ...]  # per marker / board: id, centre_px, mm_per_px, anisotropy
    image_size: tuple[int, int]
    undistorted: bool
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"mm_per_px": round(self.mm_per_px, 6), "px_per_mm": round(1.0 / self.mm_per_px, 4),
                "method": self.method, "references": list(self.references), "image_size": list(self.image_size),
                "undistorted": self.undistorted, "warnings": list(self.warnings)}


def _local_scale(H: np.ndarray, centre: np.ndarray) -> tuple[float, float]:
    """(sqrt |det J|, |J e_x| / |J e_y|) of the projective map H (px -> mm) at ``centre``."""
    p = np.array([[centre, centre + (1.0, 0.0), centre + (0.0, 1.0)]], np.float64)
    q = cv2.perspectiveTransform(p, H)[0]
    jx, jy = q[1] - q[0], q[2] - q[0]
    det = abs(jx[0] * jy[1] - jx[1] * jy[0])
    return float(np.sqrt(det)), float(np.linalg.norm(jx) / max(np.linalg.norm(jy), 1e-12))


def _result(refs: list[dict], method: str, image: np.ndarray, undistorted: bool) -> ScaleResult:
    scales = np.array([r["mm_per_px"] for r in refs])
    warnings = []
    aniso = max(abs(r["anisotropy"] - 1.0) for r in refs)
    if aniso > 0.02:
        warnings.append(f"the reference looks {aniso:.1%} longer along one axis: the camera is not square to the "
                        "bench (or pixels are not square); sizes away from the reference will be off")
    if len(scales) > 1 and (scales.max() - scales.min()) / np.median(scales) > 0.02:
        warnings.append(f"markers disagree on the scale by {(scales.max() - scales.min()) / np.median(scales):.1%}: "
                        "check they lie flat, are printed at the given size, and the camera looks straight down")
    h, w = image.shape[:2]
    return ScaleResult(float(np.median(scales)), method, tuple(refs), (w, h), undistorted, tuple(warnings))


def _undistorted(points: np.ndarray, image: np.ndarray, intrinsics: Intrinsics | None) -> np.ndarray:
    """Detected corners moved to where a distortion-free camera sees them (the frame is not resampled)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if intrinsics is None:
        return pts
    return intrinsics.undistort_points(pts, (image.shape[1], image.shape[0]))


def scale_from_aruco(image: np.ndarray, marker_mm: float, dictionary: str = "4X4_50",
                     intrinsics: Intrinsics | None = None) -> ScaleResult:
    """mm per pixel from every ArUco marker of ``dictionary`` in the frame (marker_mm: the black square's
    outer side). Raises CalibrationError when none is found."""
    if marker_mm <= 0:
        raise CalibrationError("--marker-mm must be positive")
    img = image
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    params = cv2.aruco.DetectorParameters()
    # AprilTag-style refinement (edge lines fitted): on rendered 50 px markers the side comes out within
    # 0.02 px, where corner sub-pixel refinement (saddle search) sits ~0.3 px inside an L-shaped corner.
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_APRILTAG
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(aruco_dictionary_id(dictionary)), params)
    corners, ids, _ = detector.detectMarkers(grey)
    if ids is None or len(ids) == 0:
        raise CalibrationError(f"no ArUco marker of dictionary {dictionary} found: check --aruco-dict, that the "
                               "marker is whole, flat, in focus and has a white border around it")
    square = np.float64([[0, 0], [marker_mm, 0], [marker_mm, marker_mm], [0, marker_mm]])
    refs = []
    for c, mid in sorted(zip(corners, ids.ravel()), key=lambda t: int(t[1])):
        pts = _undistorted(c, img, intrinsics)
        H = cv2.getPerspectiveTransform(pts.astype(np.float32), square.astype(np.float32))
        centre = pts.mean(axis=0)
        s, aniso = _local_scale(H, centre)
        refs.append({"id": int(mid), "centre_px": [round(float(v), 2) for v in centre],
                     "side_px": round(float(np.mean(np.linalg.norm(pts - np.roll(pts, -1, 0), axis=1))), 3),
                     "mm_per_px": round(s, 6), "anisotropy": round(aniso, 5)})
    return _result(refs, "aruco", img, intrinsics is not None)


def scale_from_checkerboard(image: np.ndarray, board: tuple[int, int] = (9, 6), square_mm: float = 25.0,
                            intrinsics: Intrinsics | None = None) -> ScaleResult:
    """mm per pixel at the centre of a checkerboard lying on the bench. Raises CalibrationError when the
    whole board is not found."""
    if square_mm <= 0:
        raise CalibrationError("--square-mm must be positive")
    img = image
    corners = find_corners(img, board)
    if corners is None:
        raise CalibrationError(f"no {board[0]}x{board[1]} checkerboard found: check --board (inner corners, "
                               "cols x rows), that the whole board is in view and in focus")
    pts = _undistorted(corners, img, intrinsics)
    H, _ = cv2.findHomography(pts, board_points(board, square_mm)[:, :2].astype(np.float64), 0)
    centre = pts.mean(axis=0)
    s, aniso = _local_scale(H, centre)
    refs = [{"id": "board", "centre_px": [round(float(v), 2) for v in centre], "mm_per_px": round(s, 6),
             "anisotropy": round(aniso, 5)}]
    return _result(refs, "checkerboard", img, intrinsics is not None)
