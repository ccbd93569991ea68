"""Synthetic calibration scenes seen through a known camera: a textured bench plane (checkerboard, ArUco
markers, a product of known size) rendered with a pinhole camera and lens distortion.

Rendering is exact per pixel: each camera pixel is undistorted to a ray (``cv2.undistortPoints``, iterated to 1e-10),
the ray meets the plane z = 0 (mm), and the plane's texture is sampled there (``cv2.remap``), 2x2
super-sampled. The inverse check is ``cv2.projectPoints``: a plane point projects to where it was drawn.
Used by the calibration tests and for checking a setup without a camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class PlaneTexture:
    """An image of the bench plane: texture pixel (u, v) is plane point (u, v) * mm_per_px (mm)."""

    image: np.ndarray  # BGR uint8
    mm_per_px: float


@dataclass(frozen=True, slots=True)
class SyntheticCamera:
    """Pinhole camera with OpenCV's distortion model (k1, k2, p1, p2, k3)."""

    camera_matrix: np.ndarray  # 3x3
    dist_coeffs: np.ndarray  # (5,)
    size: tuple[int, int]  # width, height

    @staticmethod
    def typical(size: tuple[int, int] = (640, 480), f: float = 620.0, k1: float = -0.22, k2: float = 0.06,
                fy_ratio: float = 1.0) -> "SyntheticCamera":
        w, h = size
        K = np.array([[f, 0, w / 2 + 7.5], [0, f * fy_ratio, h / 2 - 4.5], [0, 0, 1]], np.float64)
        return SyntheticCamera(K, np.array([k1, k2, 0.0, 0.0, 0.0]), size)


def checkerboard_texture(board: tuple[int, int] = (9, 6), square_px: int = 40, margin_squares: float = 1.0,
                         bench_grey: int = 200) -> tuple[PlaneTexture, np.ndarray]:
    """A printed checkerboard with ``board`` inner corners (cols, rows) on a white sheet on the bench.
    Returns the texture at 1 mm per texture pixel with ``square_px`` mm squares, and the inner corners'
    plane coordinates in mm (row-major, as ``cv2.findChessboardCorners`` orders them)."""
    cols, rows = board
    m = int(round(margin_squares * square_px))
    sheet = 2 * square_px
    w = (cols + 1) * square_px + 2 * m + 2 * sheet
    h = (rows + 1) * square_px + 2 * m + 2 * sheet
    img = np.full((h, w, 3), bench_grey, np.uint8)
    x0, y0 = sheet, sheet
    cv2.rectangle(img, (x0, y0), (w - sheet - 1, h - sheet - 1), (250, 250, 250), -1)
    ox, oy = x0 + m, y0 + m
    for j in range(rows + 1):
        for i in range(cols + 1):
            if (i + j) % 2 == 0:
                cv2.rectangle(img, (ox + i * square_px, oy + j * square_px),
                              (ox + (i + 1) * square_px - 1, oy + (j + 1) * square_px - 1), (20, 20, 20), -1)
    # A pixel's centre is its index: the edge between pixels k-1 and k lies at k - 0.5.
    corners = np.array([[ox + (i + 1) * square_px - 0.5, oy + (j + 1) * square_px - 0.5]
                        for j in range(rows) for i in range(cols)], np.float64)
    return PlaneTexture(img, 1.0), corners


def look_at(target_mm: tuple[float, float], distance_mm: float, tilt_x_deg: float = 0.0, tilt_y_deg: float = 0.0,
            roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(rvec, tvec) of a camera looking down at plane point ``target_mm`` from ``distance_mm``, tilted."""
    ax, ay, az = np.deg2rad([tilt_x_deg, tilt_y_deg, roll_deg])
    Rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    Ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    Rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    R = Rx @ Ry @ Rz  # plane -> camera
    target = np.array([target_mm[0], target_mm[1], 0.0])
    # The target lies on the optical axis, distance_mm in front of the camera.
    t = np.array([0.0, 0.0, distance_mm]) - R @ target
    rvec, _ = cv2.Rodrigues(R)
    return rvec.ravel(), t


def camera_rays(camera: SyntheticCamera, supersample: int = 2) -> np.ndarray:
    """Normalised, undistorted ray (x, y) of every (super-sampled) pixel: (h*s*w*s, 2). Depends only on
    the camera, so one call serves every pose."""
    w, h = camera.size
    s = supersample
    us, vs = np.meshgrid((np.arange(w * s) + 0.5) / s - 0.5, (np.arange(h * s) + 0.5) / s - 0.5)
    pix = np.stack([us.ravel(), vs.ravel()], 1).astype(np.float64).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
    return cv2.undistortPoints(pix, camera.camera_matrix, camera.dist_coeffs, None, None, None,
                               criteria).reshape(-1, 2)


def render_plane(texture: PlaneTexture, camera: SyntheticCamera, rvec: np.ndarray, tvec: np.ndarray,
                 background: int = 200, supersample: int = 2, noise: float = 0.0,
                 rng: np.random.Generator | None = None, rays: np.ndarray | None = None) -> np.ndarray:
    """What ``camera`` at pose (rvec, tvec) (plane mm -> camera) sees of the textured plane z = 0
    (``rays``: ``camera_rays(camera, supersample)``, to reuse across poses)."""
    w, h = camera.size
    s = supersample
    norm = camera_rays(camera, s) if rays is None else rays
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    t = np.asarray(tvec, np.float64).ravel()
    # Ray d = (x, y, 1) in camera coordinates; plane point P = R^T (lambda d - t) with P_z = 0.
    Rt = R.T
    d = np.concatenate([norm, np.ones((len(norm), 1))], 1)
    rd = d @ Rt.T
    rt = Rt @ t
    lam = rt[2] / rd[:, 2]
    P = lam[:, None] * rd - rt
    ok = lam > 0
    mx = np.where(ok, P[:, 0] / texture.mm_per_px, -1e6).astype(np.float32).reshape(h * s, w * s)
    my = np.where(ok, P[:, 1] / texture.mm_per_px, -1e6).astype(np.float32).reshape(h * s, w * s)
    big = cv2.remap(texture.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=(background,) * 3)
    img = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA) if s > 1 else big
    if noise > 0:
        rng = rng or np.random.default_rng(0)
        img = np.clip(img.astype(np.float32) + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return img


def aruco_marker(dictionary: str, marker_id: int, side_px: int) -> np.ndarray:
    d = cv2.aruco.getPredefinedDictionary(aruco_dictionary_id(dictionary))
    return cv2.aruco.generateImageMarker(d, marker_id, side_px)


def aruco_dictionary_id(name: str) -> int:
    """'4X4_50' or 'DICT_4X4_50' -> the cv2.aruco constant; ValueError on an unknown name."""
    key = name.upper()
    key = key if key.startswith("DICT_") else f"DICT_{key}"
    value = getattr(cv2.aruco, key, None)
    if not isinstance(value, int):
        raise ValueError(f"unknown ArUco dictionary {name!r}: use e.g. 4X4_50, 5X5_100, 6X6_250, ARUCO_ORIGINAL")
    return value


def place_on_bench(bench: np.ndarray, patch: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Copy ``patch`` where ``mask`` is set onto ``bench`` at (x, y), in place."""
    h, w = mask.shape
    region = bench[y:y + h, x:x + w]
    region[mask > 0] = patch[mask > 0]


def bench_with_markers(size_mm: tuple[float, float], mm_per_px: float, markers: list[tuple[int, float, float]],
                       marker_mm: float, dictionary: str = "4X4_50", bench_grey: int = 200,
                       quiet_zone: float = 0.25) -> PlaneTexture:
    """A bench plane texture with ArUco markers (id, x_mm, y_mm of the top-left corner) printed on white
    labels with a quiet zone of ``quiet_zone`` x marker size around them."""
    w, h = int(round(size_mm[0] / mm_per_px)), int(round(size_mm[1] / mm_per_px))
    img = np.full((h, w, 3), bench_grey, np.uint8)
    side = int(round(marker_mm / mm_per_px))
    q = int(round(quiet_zone * side))
    for mid, x_mm, y_mm in markers:
        x, y = int(round(x_mm / mm_per_px)), int(round(y_mm / mm_per_px))
        cv2.rectangle(img, (x - q, y - q), (x + side + q - 1, y + side + q - 1), (250, 250, 250), -1)
        img[y:y + side, x:x + side] = cv2.cvtColor(aruco_marker(dictionary, mid, side), cv2.COLOR_GRAY2BGR)
    return PlaneTexture(img, mm_per_px)
